// Binds a <textarea> to a Y.Text, both ways.
//
// Local edits: on every `input` event the textarea's new value is compared with the value it had
// before (`diff`: the common prefix and suffix), and the one changed span is applied to the Y.Text
// as a delete and an insert in one transaction. Typing, pasting, cutting, undo in the textarea
// and IME input all end up as such a span, so no keyboard handling is needed.
//
// Remote edits: the Y.Text's event delta (retain / insert / delete, in UTF-16 code units, the
// same units as a JavaScript string and a textarea's selection) is applied to the old value, and
// the selection is moved with the text around it (`applyDelta`): text inserted or deleted before
// the caret shifts it, text after it does not, so the caret stays where the user left it.
//
// Invariant, after each handler: textarea.value === Y.Text content === `shown`. Both helpers are
// pure functions (no DOM), exported for tests.

/**
 * The one span that differs between `before` and `after`: `after` is `before` with `remove`
 * code units at `index` replaced by `insert`. The span never splits a surrogate pair.
 */
export function diff(before, after) {
  const max = Math.min(before.length, after.length);
  let start = 0;
  while (start < max && before.charCodeAt(start) === after.charCodeAt(start)) start++;
  // Do not end the common prefix between the two halves of a surrogate pair.
  if (start > 0 && isHigh(before.charCodeAt(start - 1))) start--;
  let endBefore = before.length;
  let endAfter = after.length;
  while (
    endBefore > start &&
    endAfter > start &&
    before.charCodeAt(endBefore - 1) === after.charCodeAt(endAfter - 1)
  ) {
    endBefore--;
    endAfter--;
  }
  // Nor start the common suffix with the low half of one.
  if (
    endBefore < before.length &&
    isLow(before.charCodeAt(endBefore)) &&
    endBefore > start &&
    endAfter > start
  ) {
    endBefore--;
    endAfter--;
  }
  return { index: start, remove: endBefore - start, insert: after.slice(start, endAfter) };
}

function isHigh(c) {
  return c >= 0xd800 && c <= 0xdbff;
}

function isLow(c) {
  return c >= 0xdc00 && c <= 0xdfff;
}

/**
 * Applies a Y.Text delta (`[{retain: n} | {insert: string} | {delete: n}]`) to `value`, moving
 * the selection `[start, end]` along. Returns `{ value, start, end }`.
 */
export function applyDelta(value, delta, start, end) {
  let out = "";
  let pos = 0; // position in the new value
  let rest = value; // what is left of the old value
  // Text inserted at `at` moves a caret or selection edge that is after `at`; one exactly at
  // `at` stays before the new text (the user keeps typing where they were).
  const shift = (at, by) => {
    if (start > at) start += by;
    if (end > at) end += by;
  };
  for (const op of delta) {
    if (op.retain !== undefined) {
      out += rest.slice(0, op.retain);
      rest = rest.slice(op.retain);
      pos += op.retain;
    } else if (op.insert !== undefined) {
      const text = typeof op.insert === "string" ? op.insert : "";
      out += text;
      shift(pos, text.length);
      pos += text.length;
    } else if (op.delete !== undefined) {
      rest = rest.slice(op.delete);
      const cut = (x) => (x > pos ? Math.max(pos, x - op.delete) : x);
      start = cut(start);
      end = cut(end);
    }
  }
  return { value: out + rest, start, end };
}

/**
 * Keeps `textarea` and `ytext` equal from now on. The textarea takes the Y.Text's content at
 * once. Returns a function that unbinds.
 */
export function bindTextarea(ytext, textarea) {
  const origin = { textarea }; // marks this binding's own transactions
  let shown = ytext.toString();
  textarea.value = shown;

  const onInput = () => {
    const next = textarea.value;
    const { index, remove, insert } = diff(shown, next);
    shown = next;
    if (remove === 0 && insert === "") return;
    ytext.doc.transact(() => {
      if (remove > 0) ytext.delete(index, remove);
      if (insert !== "") ytext.insert(index, insert);
    }, origin);
  };

  const onChange = (event, transaction) => {
    if (transaction.origin === origin) return;
    const { scrollTop } = textarea;
    const { selectionStart, selectionEnd, selectionDirection } = textarea;
    let next = applyDelta(shown, event.delta, selectionStart, selectionEnd);
    const content = ytext.toString();
    if (next.value !== content) {
      // Not expected (the textarea always mirrors the Y.Text between events); recover by
      // showing the document, keeping the caret's offset.
      console.warn("editor: textarea was out of step with the document; reloaded it");
      next = { value: content, start: selectionStart, end: selectionEnd };
    }
    shown = next.value;
    textarea.value = shown;
    textarea.setSelectionRange(next.start, next.end, selectionDirection);
    textarea.scrollTop = scrollTop;
  };

  textarea.addEventListener("input", onInput);
  ytext.observe(onChange);
  return () => {
    textarea.removeEventListener("input", onInput);
    ytext.unobserve(onChange);
  };
}
