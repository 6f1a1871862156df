import { open, readFile, rename, unlink } from 'node:fs/promises';
import { endianness } from 'node:os';
import { crc32 } from 'node:zlib';
import { paramValues, type TensorMap } from '../autodiff/forward.ts';
import { BackflowError, ModelCorruptError, ModelFileError, ModelVersionError } from '../errors.ts';
import type { Graph } from '../graph/graph.ts';
import { deserializeGraph, serializeGraph } from '../graph/serialize.ts';
import { sizeOf } from '../tensor/shape.ts';
import { allocate, bytesPerElement, type DType, Tensor } from '../tensor/tensor.ts';
import { dict } from '../util/names.ts';

/** A graph and the values of its parameters: what a model file holds. */
export interface Model {
  /** The graph. */
  readonly graph: Graph;
  /** Its parameters by name. */
  readonly params: Readonly<Record<string, Tensor>>;
}

/** The model file format this backflow writes. */
export const MODEL_FORMAT_VERSION = 1;
const MAGIC = 'BFLOWMDL';
const PREFIX_BYTES = 32;
let tempCounter = 0;

// Note [model file format]
// One file, little-endian, every byte under a CRC-32 (zlib's):
//   0  magic 'BFLOWMDL'    8 u32 format version   12 u32 graph bytes G   16 u64 file bytes
//   24 u32 CRC of bytes 32 to the end             28 u32 CRC of bytes 0-27
//   32 the graph as serializeGraph writes it (Note [graph format], src/graph/serialize.ts)
//   32 + G  each parameter's raw bytes, in the graph's node order, back to back.
// The graph is the header: each parameter's name, dtype and shape are its node's, so the file holds
// nothing else that could disagree with it. Reading checks, in order: length >= 32 (else corrupt,
// part 'prefix'), the prefix CRC and magic, the version (newer: ModelVersionError), the file length,
// the body's CRC (part 'body'), the graph as deserializeGraph checks any graph (part 'graph'), and
// that the parameters' bytes fill the rest exactly (part 'parameters'). The 32-byte prefix keeps this
// layout in every future version, so a reader can always tell a newer version from a corrupt file.

/** A model's bytes as chunks to write in order: the prefix, the graph, each parameter's bytes (views). */
export function encodeModel(graph: Graph, params: TensorMap): { chunks: Uint8Array[]; bytes: number } {
  checkLittleEndian();
  const values = [...paramValues(graph, params, 'saveModel').values()];
  const graphBytes = serializeGraph(graph);
  const tensors = values.map((t) => new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
  let crc = crc32(graphBytes);
  let bytes = PREFIX_BYTES + graphBytes.length;
  for (const t of tensors) {
    crc = crc32(t, crc);
    bytes += t.length;
  }
  const prefix = Buffer.alloc(PREFIX_BYTES);
  prefix.write(MAGIC, 0, 'latin1');
  prefix.writeUInt32LE(MODEL_FORMAT_VERSION, 8);
  prefix.writeUInt32LE(graphBytes.length, 12);
  prefix.writeBigUInt64LE(BigInt(bytes), 16);
  prefix.writeUInt32LE(crc, 24);
  prefix.writeUInt32LE(crc32(prefix.subarray(0, 28)), 28);
  return { chunks: [prefix, graphBytes, ...tensors], bytes };
}

/** Reads and checks a model file's bytes (Note [model file format]); `path` names it in errors. */
export function decodeModel(file: Uint8Array, path = 'model'): Model {
  checkLittleEndian();
  const buf = Buffer.from(file.buffer, file.byteOffset, file.byteLength);
  const corrupt = (part: string, why: string, extra: Record<string, unknown> = {}, cause?: unknown) =>
    new ModelCorruptError(
      `model file ${path} is corrupt: ${why}`,
      { path, part, ...extra },
      cause === undefined ? undefined : { cause },
    );
  if (buf.length < PREFIX_BYTES)
    throw corrupt('prefix', `${buf.length} bytes, shorter than its ${PREFIX_BYTES}-byte prefix`);
  if (buf.toString('latin1', 0, 8) !== MAGIC) throw corrupt('prefix', 'not a backflow model (bad magic)');
  if (buf.readUInt32LE(28) !== crc32(buf.subarray(0, 28)))
    throw corrupt('prefix', 'the prefix checksum does not match');
  const version = buf.readUInt32LE(8);
  if (version > MODEL_FORMAT_VERSION) {
    throw new ModelVersionError(
      `model file ${path} has format version ${version}, newer than the version ${MODEL_FORMAT_VERSION} this build reads: use a newer backflow`,
      { path, expected: MODEL_FORMAT_VERSION, found: version },
    );
  }
  if (version < 1) throw corrupt('prefix', `format version ${version}, which never existed`);
  const fileBytes = Number(buf.readBigUInt64LE(16));
  const graphBytes = buf.readUInt32LE(12);
  if (buf.length !== fileBytes || PREFIX_BYTES + graphBytes > fileBytes) {
    throw corrupt('prefix', `${buf.length} bytes where its prefix says ${fileBytes}`, {
      expected: fileBytes,
      found: buf.length,
    });
  }
  if (crc32(buf.subarray(PREFIX_BYTES)) !== buf.readUInt32LE(24))
    throw corrupt('body', 'the checksum of its graph and parameters does not match');
  let graph: Graph;
  try {
    graph = deserializeGraph(buf.subarray(PREFIX_BYTES, PREFIX_BYTES + graphBytes));
  } catch (error) {
    if (!(error instanceof BackflowError)) throw error;
    throw corrupt('graph', `its graph does not check: ${error.message}`, {}, error);
  }
  // Names are the file's: Note [names as keys].
  const params = dict<Tensor>();
  let at = PREFIX_BYTES + graphBytes;
  for (const node of graph.params()) {
    const dtype: DType = node.dtype;
    const bytes = sizeOf(node.shape as number[]) * bytesPerElement(dtype);
    if (at + bytes > buf.length) {
      throw corrupt('parameters', `the bytes end before parameter '${node.name}'`, {
        expected: at + bytes,
        found: buf.length,
      });
    }
    const data = allocate(dtype, bytes / bytesPerElement(dtype));
    new Uint8Array(data.buffer).set(buf.subarray(at, at + bytes));
    params[node.name!] = new Tensor(dtype, [...(node.shape as number[])], data);
    at += bytes;
  }
  if (at !== buf.length)
    throw corrupt('parameters', `${buf.length - at} bytes after the last parameter`, {
      expected: at,
      found: buf.length,
    });
  return { graph, params };
}

/**
 * Saves a graph and its parameters (every one, and nothing else: InputError) in one file, atomically:
 * a temp file beside it, fsync, rename over `path`. A failure leaves what was there.
 */
export async function saveModel(
  path: string,
  graph: Graph,
  params: TensorMap,
): Promise<{
  /** Where the file is. */
  path: string;
  /** Its size in bytes. */
  bytes: number;
}> {
  const { chunks, bytes } = encodeModel(graph, params);
  const temp = `${path}.tmp-${process.pid}-${tempCounter++}`;
  let handle: Awaited<ReturnType<typeof open>> | undefined;
  try {
    handle = await open(temp, 'wx', 0o644);
    for (const chunk of chunks) {
      for (let done = 0; done < chunk.length; )
        done += (await handle.write(chunk, done, chunk.length - done)).bytesWritten;
    }
    await handle.sync();
    await handle.close();
    handle = undefined;
    await rename(temp, path);
    return { path, bytes };
  } catch (error) {
    await handle?.close().catch(() => {});
    await unlink(temp).catch(() => {});
    throw ioError(error, 'save', path);
  }
}

/** Loads a model file, every byte checked (Note [model file format]). */
export async function loadModel(path: string): Promise<Model> {
  let file: Buffer;
  try {
    file = await readFile(path);
  } catch (error) {
    throw ioError(error, 'read', path);
  }
  return decodeModel(file, path);
}

function ioError(error: unknown, what: string, path: string): ModelFileError {
  const e = error as NodeJS.ErrnoException;
  const code = typeof e?.code === 'string' ? e.code : undefined;
  return new ModelFileError(
    `model file ${path}: could not ${what} it: ${e?.message ?? String(error)}`,
    { path, code },
    { cause: error },
  );
}

/** Parameter bytes are written as the platform holds them, so the format is defined on little-endian ones. */
function checkLittleEndian(): void {
  if (endianness() !== 'LE')
    throw new ModelFileError('model files are only supported on little-endian platforms');
}
