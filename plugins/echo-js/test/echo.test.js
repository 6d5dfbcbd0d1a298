import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Flow } from 'wasmsock-sdk';
import { TestHost } from 'wasmsock-sdk/testing';
import { handler } from '../src/plugin.js';

test('echoes text and binary to the sender only', () => {
  const host = new TestHost();
  const [a, b] = [host.open('/echo'), host.open('/echo')];
  assert.deepEqual(host.message(handler, a, 'hello'), Flow.done());
  assert.deepEqual(host.message(handler, a, new Uint8Array([0, 159, 255])), Flow.done());
  const sent = host.sent(a);
  assert.equal(sent[0].text, 'hello');
  assert.equal(sent[1].kind, 'binary');
  assert.deepEqual([...sent[1].bytes], [0, 159, 255]);
  assert.deepEqual(host.sent(b), []);
});

test('a closed peer is not an error', () => {
  const host = new TestHost();
  const a = host.open('/echo');
  host.close(handler, a, 1000, 'bye');
  assert.deepEqual(host.message(handler, a, 'late'), Flow.done());
  assert.equal(host.isOpen(a), false);
});
