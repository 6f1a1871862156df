// The task queue alone: which ready task runs next, in dataflow order or following a schedule's actions.
import { describe, expect, it } from 'vitest';
import type { Task } from '../../src/actor/host-types.ts';
import type { NodeActor } from '../../src/actor/node-actor.ts';
import { actorColumns, type HostAction, type TaskPhase, TaskQueue } from '../../src/actor/task-queue.ts';
import { actionsOf as actionsOfSlot, isCompute, type Slot } from '../../src/schedule/action.ts';
import { generateSchedule } from '../../src/schedule/generators.ts';

/**
 * A stand-in for a node actor: the queue reads only its stage and which backward tasks it has. `node`
 * tells the tasks apart in assertions.
 */
interface Stub {
  readonly node: number;
  readonly stage: number;
  readonly hasBackward: boolean;
  readonly hasWeightPart: boolean;
}

function stub(node: number, stage: number, parts: { backward?: boolean; weight?: boolean } = {}): Stub {
  return { node, stage, hasBackward: parts.backward ?? true, hasWeightPart: parts.weight ?? false };
}

function queueOf(actors: readonly Stub[]): TaskQueue<never> {
  return new TaskQueue(actorColumns(actors));
}

function task(actor: Stub, phase: TaskPhase, mb: number): Task<never> {
  return {
    phase,
    node: actor.node,
    stage: actor.stage,
    replica: 0,
    mb,
    actor: actor as unknown as NodeActor<never>,
  };
}

/** A task as `phase node mb`, or null. */
const show = (t: Task<never> | null) => (t === null ? null : `${t.phase} ${t.node} ${t.mb}`);

/** Takes and completes tasks until none may run; returns them as `show` prints them. */
function drain(queue: TaskQueue<never>): string[] {
  const out: string[] = [];
  for (let t = queue.take(); t !== null; t = queue.take()) {
    out.push(show(t)!);
    queue.done(t);
  }
  return out;
}

const act = (kind: HostAction['kind'], stage: number, mb: number): HostAction => ({ kind, stage, mb });

/** A worker's compute actions from its row of a schedule. */
const actionsOf = (row: readonly Slot[]): HostAction[] =>
  row
    .flatMap(actionsOfSlot)
    .filter(isCompute)
    .map((x) => act(x.kind as HostAction['kind'], x.stage, x.microbatch));

describe('TaskQueue in dataflow order', () => {
  it('runs ready backward tasks before forward ones, each kind in the order it became ready', () => {
    const [a, b] = [stub(1, 0), stub(2, 0)];
    const queue = queueOf([a, b]);
    queue.start(2);
    queue.ready(task(a, 'forward', 0));
    queue.ready(task(b, 'backward', 1));
    queue.ready(task(a, 'forward', 1));
    queue.ready(task(b, 'backward', 0));
    expect(drain(queue)).toEqual(['backward 2 1', 'backward 2 0', 'forward 1 0', 'forward 1 1']);
  });
});

describe('TaskQueue following a schedule', () => {
  it('an action takes only the ready tasks of its (kind, stage, microbatch)', () => {
    const [a, b] = [stub(1, 0), stub(2, 0)];
    const queue = queueOf([a, b]);
    queue.setSchedule([act('F', 0, 0), act('F', 0, 1)]);
    queue.start(2);
    queue.ready(task(a, 'forward', 1));
    queue.ready(task(b, 'backward', 0));
    // 0F0 comes first: neither a task of microbatch 1 nor a backward may run in its place.
    expect(queue.take()).toBeNull();
    queue.ready(task(b, 'forward', 0));
    expect(drain(queue)).toEqual(['forward 2 0']);
  });

  it('nothing else runs until the action has run every task it covers', () => {
    const [a, b] = [stub(1, 0), stub(2, 0)];
    const queue = queueOf([a, b]);
    queue.setSchedule([act('F', 0, 0), act('F', 0, 1)]);
    queue.start(2);
    queue.ready(task(a, 'forward', 0));
    queue.ready(task(a, 'forward', 1));
    queue.ready(task(b, 'forward', 1));
    // 0F0 covers both actors of stage 0: after a's task it waits for b's, though 0F1 has two ready.
    expect(drain(queue)).toEqual(['forward 1 0']);
    queue.ready(task(b, 'forward', 0));
    expect(drain(queue)).toEqual(['forward 2 0', 'forward 2 1', 'forward 1 1']);
  });

  it('a B action runs a gradient-complete task as the whole backward, an I action as its input part', () => {
    const a = stub(1, 0, { weight: true });
    for (const kind of ['B', 'I'] as const) {
      const queue = queueOf([a]);
      queue.setSchedule([act('F', 0, 0), act(kind, 0, 0)]);
      queue.start(1);
      queue.ready(task(a, 'forward', 0));
      queue.ready(task(a, 'backward', 0));
      expect(drain(queue)).toEqual(['forward 1 0', `${kind === 'B' ? 'backward' : 'input'} 1 0`]);
    }
  });

  it('split backward: the weight part becomes ready only once the input part has run', () => {
    const a = stub(1, 0, { weight: true });
    const queue = queueOf([a]);
    queue.setSchedule([act('I', 0, 0), act('W', 0, 0)]);
    queue.start(1);
    queue.ready(task(a, 'backward', 0));
    const input = queue.take()!;
    expect(show(input)).toBe('input 1 0');
    // Taken but not done: the W action has nothing to run yet.
    expect(queue.take()).toBeNull();
    queue.done(input);
    expect(drain(queue)).toEqual(['weight 1 0']);
  });

  it('an input part of an actor without a weight part ends its backward: no weight task follows', () => {
    const [a, b] = [stub(1, 0, { weight: true }), stub(2, 0)];
    const queue = queueOf([a, b]);
    queue.setSchedule([act('I', 0, 0), act('W', 0, 0)]);
    queue.start(1);
    queue.ready(task(a, 'backward', 0));
    queue.ready(task(b, 'backward', 0));
    expect(drain(queue).sort()).toEqual(['input 1 0', 'input 2 0', 'weight 1 0']);
  });

  it('skips the actions of stages this host has no actor of', () => {
    // Actors of stage 1 only (stage 0 lives elsewhere; stage 3 is past this host's last stage).
    const a = stub(1, 1);
    const queue = queueOf([a]);
    queue.setSchedule([act('F', 0, 0), act('F', 1, 0), act('B', 3, 0), act('B', 1, 0)]);
    queue.start(1);
    queue.ready(task(a, 'forward', 0));
    queue.ready(task(a, 'backward', 0));
    expect(drain(queue)).toEqual(['forward 1 0', 'backward 1 0']);
  });
});

/**
 * A pipeline of `stages` stages, one actor each, one queue (host) per stage, following `kind`'s
 * schedule for `m` microbatches: every forward of stage 0 is ready at the start, the others become
 * ready as the tasks they depend on run (the last stage holds the loss). Returns the queues once
 * nothing may run, and how many tasks ran.
 */
function runPipeline(kind: 'gpipe' | '1f1b', stages: number, m: number) {
  const schedule = generateSchedule(kind, { workers: stages, microbatches: m });
  const actors = Array.from({ length: stages }, (_, s) => stub(s, s));
  const queues = actors.map((a, s) => {
    const q = queueOf([a]);
    q.setSchedule(actionsOf(schedule[s]!));
    q.start(m);
    return q;
  });
  for (let mb = 0; mb < m; mb++) queues[0]!.ready(task(actors[0]!, 'forward', mb));
  let ran = 0;
  for (let progress = true; progress; ) {
    progress = false;
    for (const [s, q] of queues.entries()) {
      const t = q.take();
      if (t === null) continue;
      q.done(t);
      ran++;
      progress = true;
      const last = s === stages - 1;
      if (t.phase === 'forward') {
        if (last) q.ready(task(actors[s]!, 'backward', t.mb));
        else queues[s + 1]!.ready(task(actors[s + 1]!, 'forward', t.mb));
      } else if (s > 0) queues[s - 1]!.ready(task(actors[s - 1]!, 'backward', t.mb));
    }
  }
  return { queues, ran };
}

describe('TaskQueue in-flight counts', () => {
  it('1F1B on 2 stages keeps at most 2 microbatches in flight on stage 0, GPipe all m', () => {
    const m = 4;
    const oneF = runPipeline('1f1b', 2, m);
    const gpipe = runPipeline('gpipe', 2, m);
    expect(oneF.ran).toBe(4 * m);
    expect(gpipe.ran).toBe(4 * m);
    expect(oneF.queues.map((q, s) => q.peakInFlight[s])).toEqual([2, 1]);
    expect(gpipe.queues.map((q, s) => q.peakInFlight[s])).toEqual([m, m]);
    // Every microbatch left both stages.
    for (const { queues } of [oneF, gpipe]) expect(queues.map((q, s) => q.inFlight[s])).toEqual([0, 0]);
  });

  it('a microbatch is in flight from the last forward to the last backward of its stage', () => {
    const [a, b, c] = [stub(1, 0), stub(2, 0), stub(3, 0, { backward: false })];
    const queue = queueOf([a, b, c]);
    queue.start(1);
    queue.ready(task(a, 'forward', 0));
    queue.ready(task(b, 'forward', 0));
    drain(queue);
    expect(queue.inFlight[0]).toBe(0);
    // c has no backward, but its forward is part of the stage's.
    queue.ready(task(c, 'forward', 0));
    drain(queue);
    expect(queue.inFlight[0]).toBe(1);
    queue.ready(task(a, 'backward', 0));
    drain(queue);
    expect(queue.inFlight[0]).toBe(1);
    queue.ready(task(b, 'backward', 0));
    drain(queue);
    expect([queue.inFlight[0], queue.peakInFlight[0]]).toEqual([0, 1]);
  });

  it("a host's count sums its stages at each instant: its peak is not the sum of the stages' peaks", () => {
    const [a, b] = [stub(1, 0), stub(2, 1)];
    const queue = queueOf([a, b]);
    queue.start(2);
    // Stage 0 holds microbatches 0 and 1 at once; stage 1 holds one of them at a time, later.
    queue.ready(task(a, 'forward', 0));
    queue.ready(task(a, 'forward', 1));
    drain(queue);
    queue.ready(task(a, 'backward', 0));
    drain(queue);
    for (const mb of [0, 1]) {
      queue.ready(task(b, 'forward', mb));
      drain(queue);
      queue.ready(task(b, 'backward', mb));
      drain(queue);
    }
    expect([queue.peakInFlight[0], queue.peakInFlight[1]]).toEqual([2, 1]);
    expect([queue.hostInFlight, queue.hostPeakInFlight]).toEqual([1, 2]);
  });
});

describe('TaskQueue between steps', () => {
  it('start forgets the last step: its ready tasks, the schedule position, the in-flight counts', () => {
    const a = stub(1, 0);
    const queue = queueOf([a]);
    queue.setSchedule([act('F', 0, 0), act('F', 0, 1), act('B', 0, 0), act('B', 0, 1)]);
    queue.start(2);
    queue.ready(task(a, 'forward', 0));
    queue.ready(task(a, 'forward', 1));
    // A step that failed half way: both forwards ran, one backward is ready and never taken.
    expect(drain(queue)).toEqual(['forward 1 0', 'forward 1 1']);
    queue.ready(task(a, 'backward', 0));
    expect(queue.inFlight[0]).toBe(2);
    queue.start(2);
    expect(queue.take()).toBeNull();
    expect([queue.inFlight[0], queue.peakInFlight[0]]).toEqual([0, 0]);
    // The schedule runs again from its first action.
    queue.ready(task(a, 'forward', 1));
    expect(queue.take()).toBeNull();
    queue.ready(task(a, 'forward', 0));
    expect(drain(queue)).toEqual(['forward 1 0', 'forward 1 1']);
  });

  it('clear drops the ready tasks of dataflow order', () => {
    const a = stub(1, 0);
    const queue = queueOf([a]);
    queue.start(1);
    queue.ready(task(a, 'forward', 0));
    queue.ready(task(a, 'backward', 0));
    queue.clear();
    expect(queue.take()).toBeNull();
  });

  it('a step with another microbatch count follows the schedule set for it', () => {
    const a = stub(1, 0);
    const queue = queueOf([a]);
    queue.setSchedule([act('F', 0, 1), act('F', 0, 0)]);
    queue.start(2);
    queue.ready(task(a, 'forward', 0));
    queue.ready(task(a, 'forward', 1));
    expect(drain(queue)).toEqual(['forward 1 1', 'forward 1 0']);
    queue.setSchedule([act('F', 0, 3), act('F', 0, 2), act('F', 0, 1), act('F', 0, 0)]);
    queue.start(4);
    for (let mb = 0; mb < 4; mb++) queue.ready(task(a, 'forward', mb));
    expect(drain(queue)).toEqual(['forward 1 3', 'forward 1 2', 'forward 1 1', 'forward 1 0']);
  });
});
