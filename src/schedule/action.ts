import { ScheduleError } from '../errors.ts';

/**
 * The pipeline action IR. An action is one thing a worker does for one stage and one microbatch:
 *
 *   F       forward of the stage
 *   B       full backward (input gradient and weight gradient together)
 *   I       input-gradient half of a split backward (what the previous stage waits for)
 *   W       weight-gradient half of a split backward (nobody waits for it; it fills bubbles)
 *   SEND_F  send the stage's output activation to the next stage (on another worker)
 *   RECV_F  receive the stage's input activation from the previous stage
 *   SEND_B  send the gradient of the stage's input back to the previous stage
 *   RECV_B  receive the gradient of the stage's output from the next stage
 *
 * The text form is PyTorch's: stage, kind, microbatch, as in `1F0`, `0SEND_F3`, `2I1`. The stage of a
 * communication action is always the stage that owns it on its own worker: `0SEND_F3` (stage 0 sends
 * microbatch 3 forward) pairs with `1RECV_F3`, and `2SEND_B1` pairs with `1RECV_B1`.
 *
 * A schedule is one list of slots per worker; a `null` slot is an idle step. Idle slots only line
 * the grid up in time for people to read: executors skip them, since waiting is what receives do.
 * A slot may also hold an overlapped pair (Note [overlapped F and B]).
 */
export const ACTION_KINDS = ['F', 'B', 'I', 'W', 'SEND_F', 'RECV_F', 'SEND_B', 'RECV_B'] as const;
export type ActionKind = (typeof ACTION_KINDS)[number];

/**
 * One thing a worker does for one stage and one microbatch: F (forward), B (backward), I and W (the
 * input- and weight-gradient halves of a split backward), SEND_F, RECV_F, SEND_B, RECV_B. Its text
 * form is `1F0`, `0SEND_F3` (`formatAction`, `parseAction`).
 */
export interface Action {
  /** What it does. */
  readonly kind: ActionKind;
  /** The stage it is for (for a send or receive, the stage that owns it on its own worker). */
  readonly stage: number;
  /** The microbatch it is for. */
  readonly microbatch: number;
}

// Note [overlapped F and B]
// DualPipe(V) launches the forward of one microbatch together with the backward of another, so that
// one's communication hides behind the other's compute. Such a slot is one `OverlappedAction`: its two
// halves, a forward F and a backward (B, or I), each an ordinary action of its own stage and microbatch
// (usually not the same ones). The text form is PyTorch's, `(0F3;7B1)OVERLAP_F_B`. What it means:
//   - validator and dry run (execute.ts): the pair starts when what *both* halves wait for has
//     happened, and both halves' events happen when it ends; so its halves may not wait for each other;
//   - runtime and simulator: the host runs the two halves back to back, forward first, each as soon as
//     its own inputs are there. That is never later than the dry run's start, so a schedule the
//     validator accepts cannot hang there either (sends never block; every event only comes earlier);
//   - cost: the sum of both halves, in the dry run (bubbleStats) and in the simulator. There is no
//     overlap factor: a worker thread computes one half at a time, and its messages already travel
//     while it computes (sends never block), which is the overlap DualPipe buys on a GPU.

/** Two actions launched as one slot (Note [overlapped F and B]). */
export interface OverlappedAction {
  /** The pair's kind. */
  readonly kind: 'OVERLAP_F_B';
  /** The forward half (an F), run first. */
  readonly forward: Action;
  /** The backward half (a B or an I) of another microbatch. */
  readonly backward: Action;
}

/** One step of a worker's list: an action, an overlapped pair, or `null` for an idle step. */
export type Slot = Action | OverlappedAction | null;
/** Per worker (index = worker), the ordered list of what it does. */
export type Schedule = readonly (readonly Slot[])[];

export function action(kind: ActionKind, stage: number, microbatch: number): Action {
  return { kind, stage, microbatch };
}

export function overlap(forward: Action, backward: Action): OverlappedAction {
  return { kind: 'OVERLAP_F_B', forward, backward };
}

export function isOverlapped(slot: Slot): slot is OverlappedAction {
  return slot !== null && slot.kind === 'OVERLAP_F_B';
}

const NO_ACTIONS: readonly Action[] = [];

/** The actions of a slot, in the order a host runs them: none, one, or an overlapped pair's two. */
export function actionsOf(slot: Slot): readonly Action[] {
  if (slot === null) return NO_ACTIONS;
  return slot.kind === 'OVERLAP_F_B' ? [slot.forward, slot.backward] : [slot];
}

export function isCompute(a: Action): boolean {
  return a.kind === 'F' || a.kind === 'B' || a.kind === 'I' || a.kind === 'W';
}

export function isCommunication(a: Action): boolean {
  return !isCompute(a);
}

export function isActionKind(kind: unknown): kind is ActionKind {
  return typeof kind === 'string' && (ACTION_KINDS as readonly string[]).includes(kind);
}

/** An action's text form: stage, kind, microbatch, as `1F0` or `0SEND_F3`. */
export function formatAction(a: Action): string {
  return `${a.stage}${a.kind}${a.microbatch}`;
}

/** Formats a slot the way grids and CSV cells show it: the action text, `(0F3;7B1)OVERLAP_F_B`, or '' for idle. */
export function formatSlot(slot: Slot): string {
  if (slot === null) return '';
  if (slot.kind === 'OVERLAP_F_B')
    return `(${formatAction(slot.forward)};${formatAction(slot.backward)})OVERLAP_F_B`;
  return formatAction(slot);
}

// Longest kinds first, so that `SEND_F` is never read as something shorter.
const ACTION_TEXT = /^(\d+)(SEND_F|RECV_F|SEND_B|RECV_B|F|B|I|W)(\d+)$/;
export const ACTION_FORM =
  '<stage><kind><microbatch> such as 1F0 or 0SEND_F3, kind one of ' + ACTION_KINDS.join(', ');

/** Parses `1F0`, `0SEND_F3` ... (surrounding spaces allowed). Throws a ScheduleError on anything else. */
export function parseAction(text: string): Action {
  const trimmed = text.trim();
  const match = ACTION_TEXT.exec(trimmed);
  const stage = match ? Number(match[1]) : Number.NaN;
  const microbatch = match ? Number(match[3]) : Number.NaN;
  if (!match || !Number.isSafeInteger(stage) || !Number.isSafeInteger(microbatch)) {
    const hint = ACTION_TEXT.test(trimmed.toUpperCase()) ? ' (kinds are upper case)' : '';
    throw new ScheduleError(`bad action ${JSON.stringify(text)}: expected ${ACTION_FORM}${hint}`, {
      rule: 'action text',
      expected: ACTION_FORM,
      found: text,
    });
  }
  return action(match[2] as ActionKind, stage, microbatch);
}

const OVERLAP_TEXT = /^\(([^;()]*);([^;()]*)\)OVERLAP_F_B$/;

/** Parses an action, or an overlapped pair `(0F3;7B1)OVERLAP_F_B`. Throws a ScheduleError. */
export function parseSlot(text: string): Action | OverlappedAction {
  const match = OVERLAP_TEXT.exec(text.trim());
  if (!match) return parseAction(text);
  const pair = overlap(parseAction(match[1]!), parseAction(match[2]!));
  const why = malformedReason(pair);
  if (why)
    throw new ScheduleError(`bad action ${JSON.stringify(text)}: ${why}`, {
      rule: 'action text',
      expected: OVERLAP_FORM,
      found: text,
    });
  return pair;
}

export const OVERLAP_FORM = '(<forward>;<backward>)OVERLAP_F_B such as (0F3;7B1)OVERLAP_F_B';

/** Why `slot` is not a well-formed action or pair, or null if it is (for schedules built in code). */
export function malformedReason(slot: unknown): string | null {
  if (slot === null) return null;
  if (typeof slot !== 'object') return `expected an action object or null, found ${typeof slot}`;
  if ((slot as { kind?: unknown }).kind === 'OVERLAP_F_B') {
    const { forward, backward } = slot as Record<string, unknown>;
    const why = (half: unknown) => (half === null ? 'expected an action, found null' : malformedReason(half));
    const reason = why(forward) ?? why(backward);
    if (reason !== null) return `OVERLAP_F_B: ${reason}`;
    const [f, b] = [forward as Action, backward as Action];
    if (f.kind !== 'F' || (b.kind !== 'B' && b.kind !== 'I'))
      return `OVERLAP_F_B pairs a forward F with a backward B or I, found ${formatAction(f)} and ${formatAction(b)}`;
    return null;
  }
  const { kind, stage, microbatch } = slot as Record<string, unknown>;
  if (!isActionKind(kind))
    return `unknown kind ${JSON.stringify(kind)} (expected ${ACTION_KINDS.join(', ')})`;
  if (!Number.isSafeInteger(stage) || (stage as number) < 0)
    return `stage must be an integer >= 0, found ${String(stage)}`;
  if (!Number.isSafeInteger(microbatch) || (microbatch as number) < 0)
    return `microbatch must be an integer >= 0, found ${String(microbatch)}`;
  return null;
}
