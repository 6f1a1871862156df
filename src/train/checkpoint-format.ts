import { endianness } from 'node:os';
import { crc32 } from 'node:zlib';
import type { DataCursor } from '../data/dataset.ts';
import {
  CheckpointCorruptError,
  CheckpointError,
  CheckpointShapeError,
  CheckpointTruncatedError,
  CheckpointVersionError,
  fmtShape,
} from '../errors.ts';
import type { OptimizerCheckpoint } from '../optim/optimizer.ts';
import type { RngState } from '../tensor/rng.ts';
import { shapesEqual } from '../tensor/shape.ts';
import { allocate, bytesPerElement, Tensor } from '../tensor/tensor.ts';
import { dict, own } from '../util/names.ts';
import {
  checkHeader,
  type Fields,
  type Header,
  headerFields,
  savedFields,
  type TensorEntry,
  unwritable,
} from './checkpoint-header.ts';

// The bytes of a checkpoint file, without any file system: checkpoint.ts does the saving and loading.

/** Everything a run needs to go on bitwise identically in a new process. */
export interface Checkpoint {
  /** Training steps done. */
  step: number;
  /** The parameters, by name. */
  params: Record<string, Tensor>;
  /** The optimizer's state (null without an optimizer). */
  optimizer: OptimizerCheckpoint | null;
  /** Every random generator the run draws from, by name. */
  rng: Record<string, RngState>;
  /** Where the data order stands (null when there is none). */
  cursor: DataCursor | null;
  /** Anything else, as JSON (so NaN and Infinity become null, as JSON.stringify makes them). */
  meta?: Record<string, unknown>;
}

export const CHECKPOINT_FILE = 'checkpoint.bin';
export const CHECKPOINT_FORMAT_VERSION = 1;
const MAGIC = 'BFLOWCKP';
const PREFIX_BYTES = 32;

// Note [checkpoint file format]
// Little-endian, every byte covered by a checksum (CRC-32, zlib's):
//   0  magic 'BFLOWCKP'       8  u32 format version   12 u32 header bytes H
//   16 u64 file bytes         24 u32 CRC of the header 28 u32 CRC of bytes 0-27
//   32 header, UTF-8 JSON: step, optimizer {name, step}, rng, cursor, meta, and per tensor its kind
//      (param or optimizer state), name, dtype, shape, offset, bytes and CRC
//   32 + H  tensor bytes, back to back in header order.
// The 32-byte prefix keeps this layout in every future version, so a reader can always tell a newer
// version from a corrupt file. Reading checks, in order: length >= 32 (else truncated), the prefix CRC
// and magic (corrupt), the version (newer), the file length (truncated), the header CRC, every header
// field (Note [checkpoint header fields], checkpoint-header.ts), each tensor's CRC (corrupt, naming the
// tensor).

/**
 * The file's bytes as chunks to write in order: the prefix and header, then each tensor's bytes (views
 * of the tensors, not copies).
 */
export function encodeCheckpoint(c: Checkpoint): { chunks: Uint8Array[]; bytes: number } {
  checkLittleEndian();
  const entries: TensorEntry[] = [];
  const tensors: Uint8Array[] = [];
  let offset = 0;
  const add = (kind: TensorEntry['kind'], name: string, key: string | undefined, t: Tensor) => {
    const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    entries.push({
      kind,
      name,
      ...(key === undefined ? {} : { key }),
      dtype: t.dtype,
      shape: [...t.shape],
      offset,
      bytes: bytes.length,
      crc: crc32(bytes),
    });
    tensors.push(bytes);
    offset += bytes.length;
  };
  for (const name of Object.keys(c.params).sort()) add('param', name, undefined, c.params[name]!);
  const states = c.optimizer?.states ?? {};
  for (const name of Object.keys(states).sort())
    for (const key of Object.keys(states[name]!).sort()) add('optim', name, key, states[name]![key]!);
  const header: Header = {
    step: c.step,
    optimizer: c.optimizer ? { name: c.optimizer.name, step: c.optimizer.step } : null,
    rng: c.rng,
    cursor: c.cursor,
    meta: c.meta ?? {},
    tensors: entries,
  };
  const fields = savedFields();
  checkHeader(header, fields, offset);
  const headerBytes = Buffer.from(headerJson(header, fields), 'utf8');
  const bytes = PREFIX_BYTES + headerBytes.length + offset;
  return { chunks: [Buffer.concat([prefix(headerBytes, bytes), headerBytes]), ...tensors], bytes };
}

function prefix(header: Buffer, fileBytes: number): Buffer {
  const p = Buffer.alloc(PREFIX_BYTES);
  p.write(MAGIC, 0, 'latin1');
  p.writeUInt32LE(CHECKPOINT_FORMAT_VERSION, 8);
  p.writeUInt32LE(header.length, 12);
  p.writeBigUInt64LE(BigInt(fileBytes), 16);
  p.writeUInt32LE(crc32(header), 24);
  p.writeUInt32LE(crc32(p.subarray(0, 28)), 28);
  return p;
}

/** Parses and verifies a checkpoint file's bytes; `path` is for error messages. */
export function decodeCheckpoint(file: Buffer, path: string): Checkpoint {
  checkLittleEndian();
  const context = { path };
  if (file.length < PREFIX_BYTES) {
    throw new CheckpointTruncatedError(
      `checkpoint ${path} is truncated: ${file.length} bytes, shorter than its ${PREFIX_BYTES}-byte prefix`,
      {
        ...context,
        expected: PREFIX_BYTES,
        found: file.length,
      },
    );
  }
  if (file.readUInt32LE(28) !== crc32(file.subarray(0, 28)) || file.toString('latin1', 0, 8) !== MAGIC) {
    const what =
      file.toString('latin1', 0, 8) === MAGIC
        ? 'the prefix checksum does not match'
        : 'not a backflow checkpoint (bad magic)';
    throw new CheckpointCorruptError(`checkpoint ${path} is corrupt: ${what}`, {
      ...context,
      part: 'prefix',
    });
  }
  const version = file.readUInt32LE(8);
  if (version > CHECKPOINT_FORMAT_VERSION) {
    throw new CheckpointVersionError(
      `checkpoint ${path} has format version ${version}, newer than the version ${CHECKPOINT_FORMAT_VERSION} this build reads: use a newer backflow`,
      { ...context, expected: CHECKPOINT_FORMAT_VERSION, found: version },
    );
  }
  if (version < 1)
    throw new CheckpointCorruptError(
      `checkpoint ${path} has format version ${version}, which never existed`,
      { ...context, part: 'prefix' },
    );
  const headerBytes = file.readUInt32LE(12);
  const fileBytes = Number(file.readBigUInt64LE(16));
  if (file.length < fileBytes) {
    throw new CheckpointTruncatedError(
      `checkpoint ${path} is truncated: ${file.length} of its ${fileBytes} bytes`,
      {
        ...context,
        expected: fileBytes,
        found: file.length,
      },
    );
  }
  if (file.length > fileBytes || PREFIX_BYTES + headerBytes > fileBytes) {
    throw new CheckpointCorruptError(
      `checkpoint ${path} is corrupt: ${file.length} bytes where its prefix says ${fileBytes}`,
      {
        ...context,
        part: 'prefix',
      },
    );
  }
  const headerRaw = file.subarray(PREFIX_BYTES, PREFIX_BYTES + headerBytes);
  if (crc32(headerRaw) !== file.readUInt32LE(24)) {
    throw new CheckpointCorruptError(`checkpoint ${path} is corrupt: the header checksum does not match`, {
      ...context,
      part: 'header',
    });
  }
  const header = parseHeader(headerRaw, path, fileBytes - PREFIX_BYTES - headerBytes);
  const dataStart = PREFIX_BYTES + headerBytes;
  // Names are the file's: Note [names as keys].
  const params = dict<Tensor>();
  const states = dict<Record<string, Tensor>>();
  for (const e of header.tensors) {
    const bytes = file.subarray(dataStart + e.offset, dataStart + e.offset + e.bytes);
    const label = e.kind === 'param' ? `parameter '${e.name}'` : `optimizer state '${e.key}' of '${e.name}'`;
    if (crc32(bytes) !== e.crc) {
      throw new CheckpointCorruptError(
        `checkpoint ${path} is corrupt: the checksum of ${label} does not match`,
        {
          ...context,
          part: label,
          tensor: e.name,
        },
      );
    }
    const data = allocate(e.dtype, e.bytes / bytesPerElement(e.dtype));
    new Uint8Array(data.buffer).set(bytes);
    const t = new Tensor(e.dtype, e.shape, data);
    if (e.kind === 'param') params[e.name] = t;
    else (states[e.name] ??= dict())[e.key!] = t;
  }
  return {
    step: header.step,
    params,
    optimizer: header.optimizer ? { ...header.optimizer, states } : null,
    rng: header.rng,
    cursor: header.cursor,
    meta: header.meta,
  };
}

/** The header as JSON; what JSON.stringify throws on (a BigInt, a cycle in meta) is refused, saying where. */
function headerJson(header: Header, fields: Fields): string {
  try {
    return JSON.stringify(header);
  } catch (error) {
    const problem = unwritable(header.meta, 'meta');
    if (problem !== null) fields.fail(problem);
    throw new CheckpointError(
      `saveCheckpoint: the header cannot be written as JSON: ${error}`,
      {},
      { cause: error },
    );
  }
}

/** The header's JSON, every field checked (Note [checkpoint header fields]). */
function parseHeader(raw: Buffer, path: string, dataBytes: number): Header {
  const fields = headerFields(path);
  let h: unknown;
  try {
    h = JSON.parse(raw.toString('utf8'));
  } catch (error) {
    return fields.bad('header', 'JSON', String(error));
  }
  return checkHeader(h, fields, dataBytes);
}

/** Tensor bytes are written as the platform holds them, so the format is defined on little-endian ones. */
function checkLittleEndian(): void {
  if (endianness() !== 'LE')
    throw new CheckpointError('checkpoints are only supported on little-endian platforms');
}

/** Throws a CheckpointShapeError listing every parameter missing, unexpected or of another shape. */
export function checkShapes(
  params: Record<string, Tensor>,
  expect: Readonly<Record<string, readonly number[]>>,
  path: string,
): void {
  const problems: string[] = [];
  for (const [name, shape] of Object.entries(expect)) {
    const t = own(params, name);
    if (t === undefined) problems.push(`'${name}' is missing (expected ${fmtShape(shape)})`);
    else if (!shapesEqual(t.shape, shape))
      problems.push(`'${name}' has shape ${fmtShape(t.shape)}, expected ${fmtShape(shape)}`);
  }
  for (const name of Object.keys(params))
    if (!Object.hasOwn(expect, name)) problems.push(`'${name}' is not an expected parameter`);
  if (problems.length > 0) {
    throw new CheckpointShapeError(`checkpoint ${path} does not fit the model: ${problems.join('; ')}`, {
      path,
      problems,
    });
  }
}
