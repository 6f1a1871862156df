import { describe, expect, it } from 'vitest';
import { EventHeap, EventQueue } from '../../src/sim/heap.ts';
import { Rng } from '../../src/tensor/rng.ts';

/** The order every event structure of the simulator must give: by time, then by insertion. */
function byTimeThenInsertion(events: { time: number; id: number }[]): number[] {
  return [...events].sort((a, b) => a.time - b.time || a.id - b.id).map((e) => e.id);
}

describe('simulator events', () => {
  it('EventHeap pops by time, equal times in insertion order', () => {
    const rng = new Rng(7);
    const heap = new EventHeap<number>();
    const events = Array.from({ length: 500 }, (_, id) => ({ time: rng.int(20), id }));
    for (const e of events) heap.push(e.time, e.id);
    const popped: number[] = [];
    for (let id = heap.pop(); id !== undefined; id = heap.pop()) popped.push(id);
    expect(popped).toEqual(byTimeThenInsertion(events));
  });

  it('EventQueue gives the order of one heap while the clock moves forward and events arrive for now', () => {
    const rng = new Rng(11);
    const queue = new EventQueue<number>();
    const pushed: { time: number; id: number }[] = [];
    const popped: number[] = [];
    let id = 0;
    const push = (time: number) => {
      pushed.push({ time, id });
      queue.push(time, id++);
    };
    for (let k = 0; k < 20; k++) push(rng.int(3));
    // Each popped event pushes up to three more, at the current time or later (a delay of 0 is common).
    for (let e = queue.pop(); e !== undefined; e = queue.pop()) {
      popped.push(e);
      if (id < 3000)
        for (let k = rng.int(4); k > 0; k--) push(queue.now + (rng.int(3) === 0 ? 0 : rng.int(4)));
    }
    expect(popped).toEqual(byTimeThenInsertion(pushed));
  });
});
