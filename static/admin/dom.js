// Safe DOM helpers. Every value that may come from a user (names, devices,
// user agents, audit details) reaches the page through these, as text nodes
// or attributes — never through innerHTML — so `<img src=x onerror=...>`
// is shown, not run. The CSP forbids inline styles, so "style" is refused too.

const FORBIDDEN = /^(on|style$|innerhtml$|outerhtml$|srcdoc$)/i;

/**
 * Create an element: h('td', {class: 'num', data: {socketId: id}}, 'text', childNode).
 * props: class, text, data (dataset), any other key becomes an attribute
 * (true → empty attribute, false/null/undefined → omitted).
 */
export function h(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === null || value === undefined || value === false) continue;
    if (FORBIDDEN.test(key)) throw new Error(`h(): refusing attribute ${key}`);
    if (key === 'class') node.className = Array.isArray(value) ? value.filter(Boolean).join(' ') : value;
    else if (key === 'text') node.textContent = String(value);
    else if (key === 'data') Object.assign(node.dataset, value);
    else node.setAttribute(key, value === true ? '' : String(value));
  }
  append(node, children);
  return node;
}

/**
 * A labelled table cell: <td data-label="…"><span class="cell">…</span></td>.
 * On narrow screens rows become cards with the label beside the value (a
 * two-column grid); the single wrapper keeps all of the value in one column.
 */
export function cell(label, props, ...children) {
  return h('td', {...props, 'data-label': label}, h('span', {class: 'cell'}, ...children));
}

/** Append children: strings and numbers become text nodes; null/false are skipped. */
export function append(parent, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    parent.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return parent;
}

/** Replace an element's content with the given children. */
export function fill(parent, ...children) {
  parent.replaceChildren();
  return append(parent, children);
}

/** document.getElementById that fails loudly: a missing hook is a bug in index.html. */
export function byId(id) {
  const node = document.getElementById(id);
  if (!node) throw new Error(`#${id} is missing from index.html`);
  return node;
}

/** Set an element's text (textContent, never HTML). */
export function setText(node, value) {
  node.textContent = String(value);
}

/** Keep a button's focus across a re-render: remember it by its data-* hooks. */
export function rememberFocus(container) {
  const active = document.activeElement;
  if (!active || !container.contains(active) || !active.dataset.action) return () => {};
  const selector = Object.entries(active.dataset)
    .map(([k, v]) => `[data-${k.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase())}="${CSS.escape(v)}"]`)
    .join('');
  return () => {
    const again = container.querySelector(selector);
    if (again) again.focus();
  };
}
