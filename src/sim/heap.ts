/** Whether event (t1, s1) comes before (t2, s2): by time, then by insertion order. */
function earlier(t1: number, s1: number, t2: number, s2: number): boolean {
  return t1 < t2 || (t1 === t2 && s1 < s2);
}

/**
 * A binary min-heap of events by (time, insertion order): equal times keep their order. Sifting
 * moves a hole rather than swapping, so each level costs one write per array instead of two.
 */
export class EventHeap<E> {
  private readonly times: number[] = [];
  private readonly seqs: number[] = [];
  private readonly items: E[] = [];
  private seq = 0;

  get size(): number {
    return this.items.length;
  }

  push(time: number, item: E): void {
    const seq = this.seq++;
    // Move parents that come after the new event down into the hole, from the new leaf up.
    let i = this.items.length;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!earlier(time, seq, this.times[p]!, this.seqs[p]!)) break;
      this.move(p, i);
      i = p;
    }
    this.put(i, time, seq, item);
  }

  /** The earliest event's time (Infinity when empty). */
  peekTime(): number {
    return this.items.length === 0 ? Number.POSITIVE_INFINITY : this.times[0]!;
  }

  pop(): E | undefined {
    const n = this.items.length;
    if (n === 0) return undefined;
    const top = this.items[0]!;
    const time = this.times.pop()!;
    const seq = this.seqs.pop()!;
    const item = this.items.pop()!;
    if (n === 1) return top;
    // The last event goes into the root's hole: move smaller children up until it fits.
    const { times, seqs } = this;
    const size = n - 1;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= size) break;
      const r = l + 1;
      const c = r < size && earlier(times[r]!, seqs[r]!, times[l]!, seqs[l]!) ? r : l;
      if (!earlier(times[c]!, seqs[c]!, time, seq)) break;
      this.move(c, i);
      i = c;
    }
    this.put(i, time, seq, item);
    return top;
  }

  private move(from: number, to: number): void {
    this.times[to] = this.times[from]!;
    this.seqs[to] = this.seqs[from]!;
    this.items[to] = this.items[from]!;
  }

  private put(i: number, time: number, seq: number, item: E): void {
    this.times[i] = time;
    this.seqs[i] = seq;
    this.items[i] = item;
  }
}

/**
 * Events by (time, insertion order) for a clock that never goes back: the same order as one
 * EventHeap, but events for the current time wait in a FIFO instead. They come after every event
 * already in the heap for that time (those were pushed earlier, before the clock got there), so
 * the order is unchanged. With free communication most events are for the current time (every
 * message, every task that costs nothing), and a FIFO is much cheaper than a heap.
 */
export class EventQueue<E> {
  private readonly heap = new EventHeap<E>();
  private fifo: E[] = [];
  private head = 0;
  /** The time of the event popped last. */
  now = 0;

  push(time: number, item: E): void {
    if (time === this.now) this.fifo.push(item);
    else this.heap.push(time, item);
  }

  /** The next event (advancing `now` to its time), or undefined when there is none. */
  pop(): E | undefined {
    if (this.heap.peekTime() !== this.now && this.head < this.fifo.length) {
      const item = this.fifo[this.head++]!;
      if (this.head === this.fifo.length) {
        this.fifo = [];
        this.head = 0;
      }
      return item;
    }
    if (this.heap.size === 0) return undefined;
    this.now = this.heap.peekTime();
    return this.heap.pop();
  }
}
