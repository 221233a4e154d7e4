// Formatting of times, durations and kill results (pure: no DOM, no fetch).

/** "1 socket", "3 sockets". */
export function plural(n, word, many = word + 's') {
  return `${n} ${n === 1 ? word : many}`;
}

/** A duration in seconds as "42s", "4m 05s", "2h 03m", "3d 4h". */
export function duration(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${String(s % 60).padStart(2, '0')}s`;
  const hours = Math.floor(m / 60);
  if (hours < 48) return `${hours}h ${String(m % 60).padStart(2, '0')}m`;
  return `${Math.floor(hours / 24)}d ${hours % 24}h`;
}

/** "expires in" text for an epoch-seconds deadline, given the current epoch seconds. */
export function until(deadline, now) {
  if (deadline === null || deadline === undefined) return '—';
  const left = deadline - now;
  return left <= 0 ? 'expired' : duration(left);
}

const dateTime = new Intl.DateTimeFormat(undefined, {
  year: 'numeric', month: 'short', day: 'numeric',
  hour: '2-digit', minute: '2-digit', second: '2-digit',
});

/** Epoch seconds as a local date and time. */
export function when(epochSeconds) {
  const ms = Number(epochSeconds) * 1000;
  if (epochSeconds === null || epochSeconds === undefined || !Number.isFinite(ms)) return '—';
  return dateTime.format(new Date(ms));
}

/** Epoch seconds as an ISO string (for datetime attributes); null when missing. */
export function iso(epochSeconds) {
  const ms = Number(epochSeconds) * 1000;
  return epochSeconds === null || epochSeconds === undefined || !Number.isFinite(ms) ? null : new Date(ms).toISOString();
}

/** The first characters of an opaque id, enough to tell rows apart. */
export function shortId(id) {
  const s = String(id ?? '');
  return s.length > 10 ? s.slice(0, 8) + '…' : s;
}

/**
 * A kill result (docs/admin-api.md) as one line:
 * "Ended 4 sockets: node-a 3 ✓, node-b 1 ✓, node-c unconfirmed".
 * Returns {text, confirmed}; confirmed is false when any node did not answer.
 */
export function killSummary(result) {
  const sockets = result?.sockets ?? {ended: 0, confirmed: true, nodes: []};
  const nodes = sockets.nodes ?? [];
  const parts = nodes.map((n) => (n.confirmed ? `${n.node} ${n.ended} ✓` : `${n.node} unconfirmed`));
  let text = `Ended ${plural(sockets.ended ?? 0, 'socket')}`;
  text += parts.length ? `: ${parts.join(', ')}` : ' (none were connected)';
  if (typeof result?.sessions === 'number') text += ` · ${plural(result.sessions, 'session')} revoked`;
  const confirmed = sockets.confirmed !== false && nodes.every((n) => n.confirmed);
  return {text, confirmed};
}

/** An audit "detail" object as "key: value" pairs (values JSON-encoded unless strings). */
export function detailPairs(detail) {
  if (detail === null || detail === undefined) return [];
  if (typeof detail !== 'object') return [['', String(detail)]];
  return Object.entries(detail).map(([k, v]) => [k, typeof v === 'string' ? v : JSON.stringify(v)]);
}
