import { describe, expect, it } from 'vitest';
import { type HostEvent, type HostPhase, transition } from '../../src/actor/host-phase.ts';

/** The phases a run of events leads through, with each event's action. */
function walk(from: HostPhase, events: readonly HostEvent[]): string[] {
  let phase = from;
  return events.map((event) => {
    const t = transition(phase, event);
    phase = t.phase;
    return `${event}: ${t.action} -> ${t.phase}`;
  });
}

describe('host phases', () => {
  it('a step runs, its update applies, the next step starts', () => {
    expect(walk('idle', ['start', 'update', 'start'])).toEqual([
      'start: run -> running',
      'update: run -> updated',
      'start: run -> running',
    ]);
  });

  it('an early update waits for its gradients, and a start waits behind it', () => {
    expect(walk('running', ['early-update', 'start', 'gradients', 'start'])).toEqual([
      'early-update: park -> update-pending',
      'start: park -> update-pending-start',
      'gradients: run -> updated',
      'start: run -> running',
    ]);
  });

  it('a second update of the step is dropped, pending or applied, and after a reset', () => {
    expect(walk('running', ['early-update', 'update', 'gradients', 'update', 'reset', 'update'])).toEqual([
      'early-update: park -> update-pending',
      'update: drop -> update-pending',
      'gradients: run -> updated',
      'update: drop -> updated',
      'reset: none -> updated',
      'update: drop -> updated',
    ]);
  });

  it('a failed task stops the step until the next start; a reset drops a pending update', () => {
    expect(walk('running', ['task-failed', 'reset', 'start'])).toEqual([
      'task-failed: none -> failed',
      'reset: none -> idle',
      'start: run -> running',
    ]);
    expect(walk('update-pending-start', ['reset', 'gradients'])).toEqual([
      'reset: none -> idle',
      'gradients: none -> idle',
    ]);
  });
});
