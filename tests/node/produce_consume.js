'use strict';

// produce_consume.js NAMESRV TOPIC GROUP
//
// An unmodified ali-ons producer sends N messages alternating tags TagA / TagB, each with two keys
// (one TagA message has a 5 000-byte body, which ali-ons zlib-compresses, sysFlag 0x1); an ali-ons
// push consumer (CLUSTERING, CONSUME_FROM_FIRST_OFFSET, subscription "TagA") must receive exactly
// the TagA messages, once each, with bodies, keys, tags, msgIds and queue offsets intact, and the
// broker must filter TagB out by tag code (checked on the raw pull results, before ali-ons's own
// client-side filter). Afterwards the committed consumer offsets (UPDATE_CONSUMER_OFFSET oneway,
// read back with QUERY_CONSUMER_OFFSET) must reach each queue's max offset (GET_MAX_OFFSET).
//
// Requests exercised: NameServer 105; broker 34, 310, 38, 14, 11, 15 (oneway), 30, 35.

const { Producer, Consumer, Message } = require('ali-ons');
const MQClientAPI = require('ali-ons/lib/mq_client_api');
const MessageDecoder = require('ali-ons/lib/message/message_decoder');
const common = require('./common');

const N = Number(process.env.TERN_MESSAGES || 10);
const BIG_INDEX = 2; // a TagA message with a body above ali-ons's 4 KiB compression threshold

const run = new common.Run('produce_consume');
common.guard(run);
common.instrument(run);
const args = common.parseArgs('produce_consume');

// Raw pull results, before ali-ons drops messages whose tag is not subscribed.
const rawPulled = [];
const origPull = MQClientAPI.prototype.pullMessage;
MQClientAPI.prototype.pullMessage = async function(addr, header, timeout) {
  const result = await origPull.call(this, addr, header, timeout);
  if (header.topic === args.topic) {
    for (const m of result.msgFoundList) {
      rawPulled.push({ tags: m.tags, queueId: m.queueId, queueOffset: m.queueOffset });
    }
  }
  return result;
};

function bodyOf(i) {
  if (i === BIG_INDEX) {
    return `big-${i}-` + 'x'.repeat(5000);
  }
  return `body-${i}-héllo-消息`;
}

async function main() {
  const producer = new Producer(common.clientOptions(args.namesrv, {
    producerGroup: `${args.group}_PRODUCER`,
  }));
  producer.on('error', err => run.clientError('producer', err));
  await producer.ready();
  // ali-ons cannot auto-create topics (see common.ensureTopic): create it like `mqadmin updateTopic`.
  await common.ensureTopic(run, producer._mqClient, args.topic, 4);

  // 1. Produce.
  const sent = [];
  for (let i = 0; i < N; i++) {
    const tag = i % 2 === 0 ? 'TagA' : 'TagB';
    const msg = new Message(args.topic, tag, bodyOf(i));
    msg.keys = [ `key-${i}`, `second-${i}` ];
    let result;
    try {
      result = await producer.send(msg);
    } catch (err) {
      run.fail(`send #${i} (${tag}) failed: ${err.name} code=${err.code} ${err.message}`);
      return;
    }
    sent.push({ i, tag, body: bodyOf(i), keys: `key-${i} second-${i}`, result });
  }
  run.note('sent', sent.map(s => ({
    i: s.i, tag: s.tag, msgId: s.result.msgId, queueId: s.result.messageQueue.queueId,
    queueOffset: s.result.queueOffset, status: s.result.sendStatus,
  })));
  run.check('all sends SEND_OK', sent.every(s => s.result.sendStatus === 'SEND_OK'),
    sent.filter(s => s.result.sendStatus !== 'SEND_OK').map(s => s.result.sendStatus));
  run.check('send msgId is a 32-hex offset message id', sent.every(s => /^[0-9A-F]{32}$/.test(s.result.msgId || '')),
    sent.map(s => s.result.msgId));
  const brokerName = sent[0].result.messageQueue.brokerName;
  const brokerAddr = producer._mqClient.findBrokerAddressInPublish(brokerName);
  run.note('broker', { brokerName, brokerAddr });
  const idAddrs = sent.map(s => {
    try {
      return MessageDecoder.decodeMessageId(s.result.msgId).address;
    } catch (err) {
      return `undecodable: ${err.message}`;
    }
  });
  run.check('send msgId encodes the broker address from the route', idAddrs.every(a => a === brokerAddr),
    { brokerAddr, idAddrs });
  const offsetsByQueue = {};
  for (const s of sent) {
    const q = String(s.result.messageQueue.queueId);
    offsetsByQueue[q] = offsetsByQueue[q] || [];
    offsetsByQueue[q].push(s.result.queueOffset);
  }
  run.check('queue offsets are consecutive per queue from 0',
    Object.values(offsetsByQueue).every(list => list.every((o, idx) => o === idx)), offsetsByQueue);

  // 2. Consume TagA only.
  const received = [];
  const consumer = new Consumer(common.clientOptions(args.namesrv, {
    consumerGroup: args.group,
    consumeFromWhere: 'CONSUME_FROM_FIRST_OFFSET',
  }));
  consumer.on('error', err => run.clientError('consumer', err));
  consumer.subscribe(args.topic, 'TagA', async msg => {
    received.push({
      msgId: msg.msgId,
      topic: msg.topic,
      tags: msg.tags,
      keys: msg.keys,
      body: msg.body ? msg.body.toString() : null,
      queueId: msg.queueId,
      queueOffset: msg.queueOffset,
      sysFlag: msg.sysFlag,
      reconsumeTimes: msg.reconsumeTimes,
      uniqKey: msg.properties.UNIQ_KEY,
      storeHost: msg.storeHost,
      bornTimestamp: msg.bornTimestamp,
      storeTimestamp: msg.storeTimestamp,
    });
  });
  await consumer.ready();

  const expected = sent.filter(s => s.tag === 'TagA');
  const gotAll = await common.waitFor(() => received.length >= expected.length, 30000);
  run.check('consumer received every TagA message within 30 s', gotAll,
    `received ${received.length} of ${expected.length}`);
  // Give stray deliveries (TagB, duplicates) a chance to show up.
  await common.sleep(2000);

  run.note('received', received.map(r => ({
    msgId: r.msgId, tags: r.tags, keys: r.keys, queueId: r.queueId, queueOffset: r.queueOffset,
    bodyLength: r.body && r.body.length, sysFlag: r.sysFlag, uniqKey: r.uniqKey, storeHost: r.storeHost,
  })));
  run.check('no TagB message reached the handler', received.every(r => r.tags === 'TagA'),
    received.filter(r => r.tags !== 'TagA').map(r => r.tags));
  const rawTagB = rawPulled.filter(m => m.tags !== 'TagA');
  run.check('broker filtered TagB out by tag code (raw pull results)', rawTagB.length === 0,
    { rawPulledTagB: rawTagB.slice(0, 10) });
  const byId = new Map();
  for (const r of received) {
    byId.set(r.msgId, (byId.get(r.msgId) || 0) + 1);
  }
  run.check('each TagA message consumed exactly once',
    received.length === expected.length && expected.every(s => byId.get(s.result.msgId) === 1),
    { expected: expected.map(s => s.result.msgId), received: received.map(r => r.msgId) });
  for (const s of expected) {
    const r = received.find(x => x.msgId === s.result.msgId);
    if (!r) continue;
    run.check(`message #${s.i}: body intact`, r.body === s.body,
      { expectedLength: s.body.length, gotLength: r.body && r.body.length, got: r.body && r.body.slice(0, 60) });
    run.check(`message #${s.i}: keys visible`, r.keys === s.keys, { expected: s.keys, got: r.keys });
    run.check(`message #${s.i}: topic, queue and offset match the send result`,
      r.topic === args.topic && String(r.queueId) === String(s.result.messageQueue.queueId) &&
      r.queueOffset === s.result.queueOffset,
      { topic: r.topic, queueId: r.queueId, queueOffset: r.queueOffset, sent: s.result });
    run.check(`message #${s.i}: broker added a 32-hex UNIQ_KEY`, /^[0-9A-F]{32}$/.test(r.uniqKey || ''),
      r.uniqKey);
    run.check(`message #${s.i}: storeTimestamp >= bornTimestamp`, r.storeTimestamp >= r.bornTimestamp - 5,
      { born: r.bornTimestamp, store: r.storeTimestamp });
  }
  const big = received.find(r => r.body && r.body.startsWith(`big-${BIG_INDEX}-`));
  if (big) {
    run.check('compressed message kept sysFlag bit 0x1 and decompresses', (big.sysFlag & 1) === 1,
      { sysFlag: big.sysFlag });
  }

  // 3. Committed offsets reach the queues' max offsets (UPDATE_CONSUMER_OFFSET is oneway).
  const mqs = consumer._topicSubscribeInfoTable.get(args.topic) || [];
  run.check('consumer learned the topic\'s queues from the route', mqs.length > 0, mqs.length);
  const offsetReport = {};
  const deadline = Date.now() + 10000;
  for (;;) {
    for (const mq of mqs) {
      let max;
      let committed;
      try {
        max = await consumer._mqClient.getMaxOffset(brokerAddr, args.topic, mq.queueId, 3000);
      } catch (err) {
        max = `error code=${err.code} ${err.message}`;
      }
      try {
        committed = await consumer._mqClient.queryConsumerOffset(brokerAddr, {
          consumerGroup: args.group, topic: args.topic, queueId: mq.queueId,
        }, 3000);
      } catch (err) {
        committed = `error code=${err.code} ${err.message}`;
      }
      offsetReport[mq.queueId] = { max, committed };
    }
    const done = mqs.every(mq => offsetReport[mq.queueId].committed === offsetReport[mq.queueId].max);
    if (done || Date.now() > deadline) break;
    await common.sleep(500);
  }
  run.note('offsets', offsetReport);
  run.check('committed consumer offsets reach each queue\'s max offset',
    mqs.every(mq => offsetReport[mq.queueId] && offsetReport[mq.queueId].committed === offsetReport[mq.queueId].max),
    offsetReport);

  await common.closeAll(run, [ consumer, producer ]);
}

main().then(
  () => run.finish(run.failures.length ? 'failed' : 'ok'),
  err => {
    run.fail(`crashed: ${err && err.stack}`);
    run.finish('crashed');
  }
);
