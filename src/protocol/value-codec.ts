// Plain values as bytes, for control calls that cross a network (nats-rpc.ts): msgpack, with
// ArrayBuffers and typed arrays kept as such (tensors travel as bytes, bit for bit) and -0 kept.
import { Packr } from 'msgpackr';
import { ProtocolError } from '../errors.ts';
import { marked } from './frame.ts';

// moreTypes: ArrayBuffer and every typed array round-trip as themselves; useRecords: false, so that
// no message depends on a structure table another one defined. msgpackr renames a key `__proto__`
// on decoding: nothing read reaches a prototype.
const packr = new Packr({ useRecords: false, moreTypes: true });

/** `value` as msgpack bytes (a copy of its own). A value msgpack cannot carry is a ProtocolError. */
export function packValue(value: unknown, what: string): Uint8Array<ArrayBuffer> {
  try {
    return packr.pack(marked(value, 0)).slice();
  } catch (err) {
    throw new ProtocolError(`${what}: cannot be encoded as msgpack: ${(err as Error).message}`, {
      phase: 'send',
    });
  }
}

/** The value of msgpack bytes; bytes that do not decode are a ProtocolError naming `what`. */
export function unpackValue(bytes: Uint8Array, what: string): unknown {
  try {
    return packr.unpack(bytes);
  } catch (err) {
    throw new ProtocolError(
      `${what}: expected msgpack, found bytes that do not decode (${(err as Error).message})`,
      {
        phase: 'receive',
      },
    );
  }
}
