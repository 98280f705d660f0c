// The package's incremental SHA-256 (pkg/src/sha256.ts) against node's, at the padding's
// edges and over chunks that split blocks anywhere.
//   node --test tests/browser/sha256.test.mjs     (after pkg/ is built)
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { Sha256 } from '../../pkg/dist/sha256.js';

const reference = (bytes) => createHash('sha256').update(bytes).digest('hex');

function hashInChunks(bytes, size) {
  const hasher = new Sha256();
  for (let offset = 0; offset < bytes.length; offset += size) hasher.update(bytes.subarray(offset, offset + size));
  return hasher.hex();
}

test('known digests', () => {
  const empty = new Sha256();
  assert.equal(empty.hex(), 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
  const abc = new Sha256();
  abc.update(new TextEncoder().encode('abc'));
  assert.equal(abc.hex(), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
});

test('every length around the padding, whole and in chunks of every size up to 70', () => {
  for (const length of [1, 55, 56, 57, 63, 64, 65, 119, 120, 128, 1000]) {
    const bytes = randomBytes(length);
    const expected = reference(bytes);
    for (let size = 1; size <= 70; size++) assert.equal(hashInChunks(bytes, size), expected, `${length} bytes in chunks of ${size}`);
  }
});

test('a few megabytes in uneven chunks', () => {
  const bytes = randomBytes((3 << 20) + 17);
  assert.equal(hashInChunks(bytes, 65_537), reference(bytes));
});
