import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Connect } from 'wasmsock-sdk';
import { TestHost } from 'wasmsock-sdk/testing';
import { handler } from '../src/plugin.ts';

const json = (host: TestHost, conn: Parameters<TestHost['sent']>[0]) => host.sent(conn).map((m) => m.json());

test('members get what others publish, with the sender named', () => {
  const host = new TestHost();
  const [ada] = host.connect(handler, { route: '/rooms', query: 'user=ada' });
  const bob = host.open('/rooms');
  for (const c of [ada, bob]) {
    host.message(handler, c, JSON.stringify({ event: 'subscribe', channel: 'news' }));
  }
  assert.deepEqual(json(host, bob), [{ event: 'subscribed', channel: 'news', members: 2 }]);
  host.sent(ada);
  host.message(handler, ada, JSON.stringify({ event: 'publish', channel: 'news', data: { n: 1 } }));
  assert.deepEqual(json(host, bob), [{ event: 'message', channel: 'news', data: { n: 1 }, from: 'ada' }]);
  assert.deepEqual(json(host, ada), [], 'the sender does not get its own message');
});

test('publish counts are kept in the store and the attachment', () => {
  const host = new TestHost();
  const a = host.open('/rooms');
  host.message(handler, a, JSON.stringify({ event: 'publish', channel: 'c', data: 1 }));
  host.message(handler, a, JSON.stringify({ event: 'publish', channel: 'c', data: 2 }));
  host.message(handler, a, JSON.stringify({ event: 'stats', channel: 'c' }));
  assert.deepEqual(json(host, a), [{ event: 'stats', channel: 'c', published: 2, members: 0, sent: 2 }]);
  assert.equal(new TextDecoder().decode(host.kv('published:c')), '2');
});

test('bad requests get an error reply, and the connection stays', () => {
  const host = new TestHost();
  const a = host.open('/rooms');
  host.message(handler, a, 'not json');
  host.message(handler, a, JSON.stringify({ event: 'subscribe', channel: '' }));
  const replies = json(host, a);
  assert.equal(replies.length, 2);
  assert.ok(replies.every((r) => r.event === 'error'));
  assert.equal(host.isOpen(a), true);
});

test('a user named in the query names the connection', () => {
  const host = new TestHost();
  const [, answer] = host.connect(handler, { route: '/rooms', query: 'user=ada' });
  assert.deepEqual(answer, Connect.acceptAs('ada'));
});
