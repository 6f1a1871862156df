// One parameter actor alone: when its gradient closes, and that it sums in Note [gradient sum order].
import { describe, expect, it } from 'vitest';
import { ParamActor } from '../../src/actor/param-actor.ts';
import { eager } from '../../src/ops/eager.ts';
import { Rng } from '../../src/tensor/rng.ts';
import { bitwiseEqual, type Tensor, tensor } from '../../src/tensor/tensor.ts';
import { expectBitwise } from '../support/expect.ts';

const R = 2;
const M = 3;
const CELLS = 2;

/** Every (replica, microbatch, cell) a step owes, replica by replica, microbatch by microbatch. */
const owed = () =>
  Array.from({ length: R * M * CELLS }, (_, i) => ({
    replica: Math.floor(i / (M * CELLS)),
    mb: Math.floor(i / CELLS) % M,
    cell: i % CELLS,
  }));

function started(expected = CELLS): ParamActor<Tensor> {
  const p = new ParamActor(7, tensor([0, 0, 0, 0]), expected);
  p.start(M, R);
  return p;
}

/**
 * Contributions whose float32 sum depends on the order: magnitudes from 1e-3 to 1e5, both signs.
 * By (replica, mb, cell).
 */
function contributions(seed: number): Tensor[][][] {
  const rng = new Rng(seed);
  const value = () => tensor(Array.from({ length: 4 }, () => rng.normal() * 10 ** rng.int(9) * 1e-3));
  return Array.from({ length: R }, () =>
    Array.from({ length: M }, () => Array.from({ length: CELLS }, value)),
  );
}

/** The oracle: left folds over replicas of left folds over microbatches of left folds over cells. */
function leftFold(c: Tensor[][][]): Tensor {
  const fold = (ts: Tensor[]) => ts.reduce((a, b) => eager.add(a, b));
  return fold(c.map((mbs) => fold(mbs.map(fold))));
}

describe('ParamActor', () => {
  it('closes only when every (replica, microbatch) delivered every owed contribution', () => {
    const p = started();
    const c = contributions(1);
    const all = owed();
    for (const { replica, mb, cell } of all.slice(0, -1)) {
      expect(p.receive(eager, replica, mb, cell, c[replica]![mb]![cell]!)).toBeNull();
      expect(p.closed).toBe(false);
    }
    const { replica, mb, cell } = all[all.length - 1]!;
    expect(p.receive(eager, replica, mb, cell, c[replica]![mb]![cell]!)).not.toBeNull();
    expect(p.closed).toBe(true);
  });

  it('sums in the order of Note [gradient sum order] whatever the delivery order (20 seeded orders)', () => {
    const c = contributions(2);
    const oracle = leftFold(c);
    const rng = new Rng(3);
    let arrivalOrderDiffers = false;
    for (let round = 0; round < 20; round++) {
      const order = rng.shuffle(owed());
      const p = started();
      let total: Tensor | null = null;
      for (const { replica, mb, cell } of order) {
        const got = p.receive(eager, replica, mb, cell, c[replica]![mb]![cell]!);
        if (got !== null) total = got;
      }
      expectBitwise(total!, oracle, `order ${round}`);
      const inArrivalOrder = order
        .map(({ replica, mb, cell }) => c[replica]![mb]![cell]!)
        .reduce((a, b) => eager.add(a, b));
      arrivalOrderDiffers ||= !bitwiseEqual(inArrivalOrder, oracle);
    }
    // The values make the order show: summing as they arrived would have differed.
    expect(arrivalOrderDiffers).toBe(true);
  });

  it('with one contribution owed per microbatch, folds microbatches then replicas', () => {
    const c = contributions(4).map((mbs) => mbs.map((cells) => [cells[0]!]));
    const p = started(1);
    let total: Tensor | null = null;
    for (const [replica, mb] of [
      [1, 2],
      [0, 1],
      [1, 0],
      [0, 2],
      [1, 1],
      [0, 0],
    ] as const)
      total = p.receive(eager, replica, mb, 0, c[replica]![mb]![0]!) ?? total;
    expectBitwise(total!, leftFold(c));
  });

  it('missing() lists exactly the (replica, microbatch) entries still owed something', () => {
    const p = started();
    const c = contributions(5);
    const give = (replica: number, mb: number, cell: number) =>
      p.receive(eager, replica, mb, cell, c[replica]![mb]![cell]!);
    give(0, 0, 0);
    give(0, 0, 1); // complete, folded
    give(0, 2, 1);
    give(0, 2, 0); // complete, waits for microbatch 1
    give(0, 1, 1); // one of two
    give(1, 1, 0); // one of two
    expect(p.missing()).toEqual([
      { replica: 0, mb: 1, have: 1, need: 2 },
      { replica: 1, mb: 0, have: 0, need: 2 },
      { replica: 1, mb: 1, have: 1, need: 2 },
      { replica: 1, mb: 2, have: 0, need: 2 },
    ]);
  });

  it('missing() is empty once closed, and so is a parameter owed nothing', () => {
    const p = started();
    const c = contributions(6);
    for (const { replica, mb, cell } of owed()) p.receive(eager, replica, mb, cell, c[replica]![mb]![cell]!);
    expect(p.missing()).toEqual([]);
    const unused = started(0);
    expect(unused.closed).toBe(true);
    expect(unused.missing()).toEqual([]);
  });

  it('has() detects a duplicate: a contribution that arrived, or any once its (replica, microbatch) is complete', () => {
    const p = started();
    const c = contributions(7);
    expect(p.has(1, 2, 0)).toBe(false);
    p.receive(eager, 1, 2, 0, c[1]![2]![0]!);
    expect([p.has(1, 2, 0), p.has(1, 2, 1), p.has(0, 2, 0), p.has(1, 1, 0)]).toEqual([
      true,
      false,
      false,
      false,
    ]);
    p.receive(eager, 1, 2, 1, c[1]![2]![1]!);
    expect([p.has(1, 2, 0), p.has(1, 2, 1)]).toEqual([true, true]);
  });

  it('start opens a new step: nothing of the last one counts', () => {
    const p = started();
    const c = contributions(8);
    for (const { replica, mb, cell } of owed()) p.receive(eager, replica, mb, cell, c[replica]![mb]![cell]!);
    p.reset();
    p.start(M, R);
    expect(p.closed).toBe(false);
    expect(p.has(0, 0, 0)).toBe(false);
    expect(p.missing()).toHaveLength(R * M);
  });
});
