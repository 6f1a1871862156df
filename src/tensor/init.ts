import { InputError } from '../errors.ts';
import type { Rng } from './rng.ts';
import type { ConcreteShape } from './shape.ts';
import { type DType, full, type Tensor } from './tensor.ts';

/**
 * How a parameter gets its first value: plain data, so graphs can carry it and serialize it.
 * Fans follow the dense-layer convention `x @ W` with `W: [fanIn, fanOut]`; for higher ranks the
 * trailing dimensions are a receptive field multiplied into both fans.
 */
export type Initializer =
  | {
      /** All zeros. */
      kind: 'zeros';
    }
  | {
      /** All ones. */
      kind: 'ones';
    }
  | {
      /** Every element `value`. */
      kind: 'constant';
      /** The value. */
      value: number;
    }
  | {
      /** Uniform on [low, high). */
      kind: 'uniform';
      /** Default -0.05. */
      low?: number;
      /** Default 0.05. */
      high?: number;
    }
  | {
      /** Normal with `mean` and `std`. */
      kind: 'normal';
      /** Default 0. */
      mean?: number;
      /** Default 0.05. */
      std?: number;
    }
  | {
      /** Uniform with limit sqrt(6 / (fanIn + fanOut)) (Glorot and Bengio). */
      kind: 'glorotUniform';
    }
  | {
      /** Normal with std sqrt(2 / (fanIn + fanOut)). */
      kind: 'glorotNormal';
    }
  | {
      /** Uniform with limit sqrt(6 / fanIn) (He et al.). */
      kind: 'heUniform';
    }
  | {
      /** Normal with std sqrt(2 / fanIn). */
      kind: 'heNormal';
    };

/**
 * The numbers each kind of initializer takes, `?` marking those it may leave out: what a graph may
 * say about one (checkGraph refuses any other field).
 */
export const INITIALIZER_FIELDS: Readonly<Record<Initializer['kind'], readonly string[]>> = {
  zeros: [],
  ones: [],
  constant: ['value'],
  uniform: ['low?', 'high?'],
  normal: ['mean?', 'std?'],
  glorotUniform: [],
  glorotNormal: [],
  heUniform: [],
  heNormal: [],
};

export function fans(shape: ConcreteShape): { fanIn: number; fanOut: number } {
  if (shape.length === 0) return { fanIn: 1, fanOut: 1 };
  if (shape.length === 1) return { fanIn: shape[0]!, fanOut: shape[0]! };
  let field = 1;
  for (let i = 2; i < shape.length; i++) field *= shape[i]!;
  return { fanIn: shape[0]! * field, fanOut: shape[1]! * field };
}

/** A tensor of `shape` and `dtype` with the initializer's values, drawn from `rng`. */
export function initialize(init: Initializer, shape: ConcreteShape, dtype: DType, rng: Rng): Tensor {
  const { fanIn, fanOut } = fans(shape);
  switch (init.kind) {
    case 'zeros':
      return full(shape, 0, dtype);
    case 'ones':
      return full(shape, 1, dtype);
    case 'constant':
      return full(shape, init.value, dtype);
    case 'uniform':
      return rng.uniformTensor(shape, init.low ?? -0.05, init.high ?? 0.05, dtype);
    case 'normal':
      return rng.normalTensor(shape, init.mean ?? 0, init.std ?? 0.05, dtype);
    case 'glorotUniform': {
      const limit = Math.sqrt(6 / (fanIn + fanOut));
      return rng.uniformTensor(shape, -limit, limit, dtype);
    }
    case 'glorotNormal':
      return rng.normalTensor(shape, 0, Math.sqrt(2 / (fanIn + fanOut)), dtype);
    case 'heUniform': {
      const limit = Math.sqrt(6 / fanIn);
      return rng.uniformTensor(shape, -limit, limit, dtype);
    }
    case 'heNormal':
      return rng.normalTensor(shape, 0, Math.sqrt(2 / fanIn), dtype);
    default:
      throw new InputError(`initialize: unknown initializer ${JSON.stringify(init)}`, {
        expected: 'zeros|ones|constant|uniform|normal|glorotUniform|glorotNormal|heUniform|heNormal',
        found: init,
      });
  }
}
