// The live feed: GET /admin/events (Server-Sent Events).
//
// Why fetch() and not EventSource: EventSource cannot send an Authorization
// header, and Latch never accepts a token in the query string (it would land
// in access logs). So the stream is read with fetch() + a body reader, and the
// SSE framing (WHATWG HTML §9.2) is parsed here.

import {ApiError, errorOf, request} from './api.js';

const SILENCE_LIMIT = 45_000; // the server sends ": ping" every 15 s
const BACKOFF_MAX = 30_000;

/** Incremental SSE parser: push() text as it arrives, get {event, data, id} per frame. */
export class SseParser {
  constructor(onFrame) {
    this.onFrame = onFrame;
    this.buffer = '';
    this.event = '';
    this.data = [];
    this.id = '';
    this.retry = null;
  }

  /** Feed decoded text; final=true at end of stream. */
  push(text, final = false) {
    this.buffer += text;
    const breaks = /[\r\n]/g;
    let start = 0;
    let match;
    while ((match = breaks.exec(this.buffer)) !== null) {
      const at = match.index;
      // A lone "\r" at the end may be the first half of "\r\n": wait for more.
      if (this.buffer[at] === '\r' && at === this.buffer.length - 1 && !final) break;
      this.line(this.buffer.slice(start, at));
      start = at + (this.buffer[at] === '\r' && this.buffer[at + 1] === '\n' ? 2 : 1);
      breaks.lastIndex = start;
    }
    this.buffer = this.buffer.slice(start);
  }

  line(line) {
    if (line === '') {
      // A blank line ends the frame; a frame without data is dropped (per spec).
      if (this.data.length) {
        this.onFrame({event: this.event || 'message', data: this.data.join('\n'), id: this.id});
      }
      this.event = '';
      this.data = [];
      return;
    }
    if (line.startsWith(':')) return; // comment, e.g. ": ping"
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') this.event = value;
    else if (field === 'data') this.data.push(value);
    else if (field === 'id' && !value.includes('\0')) this.id = value;
    else if (field === 'retry' && /^\d+$/.test(value)) this.retry = Number(value);
  }
}

/**
 * Keep a connection to /admin/events open until stop() is called.
 * onEvent(name, data) gets each parsed event (data is the decoded JSON);
 * onStatus(state, detail) gets 'connecting' | 'live' | 'waiting' (detail: ms) | 'stopped'.
 * A 401 is refreshed and retried by request(); if that fails the session is
 * over and the app stops this feed.
 */
export function startEvents({onEvent, onStatus}) {
  let stopped = false;
  let current = null; // AbortController of the open connection or pending wait
  let attempt = 0;

  const stop = () => {
    stopped = true;
    current?.abort();
  };

  const dispatch = (frame) => {
    let data = null;
    try {
      data = frame.data ? JSON.parse(frame.data) : null;
    } catch {
      console.warn('latch: ignoring an event with malformed JSON', frame.event);
      return;
    }
    if (frame.event === 'hello') {
      attempt = 0;
      onStatus('live', data);
    }
    if (frame.event === 'bye') stopped = true; // our own session ended; never reconnect
    onEvent(frame.event, data);
  };

  const connectOnce = async () => {
    current = new AbortController();
    const {signal} = current;
    const response = await request('/admin/events', {headers: {Accept: 'text/event-stream'}, signal});
    if (!response.ok) throw await errorOf(response);
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    const parser = new SseParser(dispatch);
    // A proxy can keep a dead connection "open" forever: no bytes for
    // SILENCE_LIMIT means it is gone, so drop it and reconnect.
    let watchdog = 0;
    const arm = () => {
      clearTimeout(watchdog);
      watchdog = setTimeout(() => current?.abort(), SILENCE_LIMIT);
    };
    arm();
    try {
      for (;;) {
        const {value, done} = await reader.read();
        if (done || stopped) break;
        arm();
        parser.push(decoder.decode(value, {stream: true}));
      }
      parser.push(decoder.decode(), true);
    } finally {
      clearTimeout(watchdog);
      reader.cancel().catch(() => {});
    }
  };

  const wait = (ms) =>
    new Promise((resolve) => {
      current = new AbortController();
      const t = setTimeout(resolve, ms);
      current.signal.addEventListener('abort', () => {
        clearTimeout(t);
        resolve();
      });
    });

  (async () => {
    while (!stopped) {
      onStatus('connecting');
      try {
        await connectOnce();
      } catch (err) {
        if (stopped) break;
        // 401 after a failed refresh: the session is gone and the app stops us.
        // 403: this account lost its admin role; retrying cannot help.
        if (err instanceof ApiError && (err.status === 401 || err.status === 403)) break;
        if (err.name !== 'AbortError') console.warn('latch: event stream failed:', err.message);
      }
      if (stopped) break;
      const base = Math.min(BACKOFF_MAX, 1000 * 2 ** attempt);
      const delay = Math.round(base * (0.8 + Math.random() * 0.4)); // jitter: nodes restart together
      attempt += 1;
      onStatus('waiting', delay);
      await wait(delay);
    }
    onStatus('stopped');
  })();

  return stop;
}
