// A line diff (longest common subsequence) for comparing two agent versions. Agent definitions are small; inputs
// beyond MAX_LINES lines on either side fall back to "everything changed" rather than an O(n·m) table.

const MAX_LINES = 3000;

/** Stable JSON: keys sorted, two-space indent, so reordered keys do not show up as changes. */
export function canonical(value) {
  const sort = (v) => {
    if (Array.isArray(v)) return v.map(sort);
    if (v && typeof v === "object") {
      return Object.fromEntries(
        Object.keys(v)
          .sort()
          .map((k) => [k, sort(v[k])]),
      );
    }
    return v;
  };
  return JSON.stringify(sort(value), null, 2);
}

/** [{op: "same"|"add"|"del", text}] turning lines `a` into lines `b`. */
export function diffLines(a, b) {
  const n = a.length;
  const m = b.length;
  if (n > MAX_LINES || m > MAX_LINES) {
    return [...a.map((text) => ({ op: "del", text })), ...b.map((text) => ({ op: "add", text }))];
  }
  // lcs[i][j] = LCS length of a[i:] and b[j:], stored row-major in one typed array
  const w = m + 1;
  const lcs = new Uint32Array((n + 1) * w);
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) {
      lcs[i * w + j] = a[i] === b[j] ? lcs[(i + 1) * w + j + 1] + 1 : Math.max(lcs[(i + 1) * w + j], lcs[i * w + j + 1]);
    }
  }
  const out = [];
  let i = 0;
  let j = 0;
  while (i < n && j < m) {
    if (a[i] === b[j]) {
      out.push({ op: "same", text: a[i] });
      i++;
      j++;
    } else if (lcs[(i + 1) * w + j] >= lcs[i * w + j + 1]) {
      out.push({ op: "del", text: a[i++] });
    } else {
      out.push({ op: "add", text: b[j++] });
    }
  }
  while (i < n) out.push({ op: "del", text: a[i++] });
  while (j < m) out.push({ op: "add", text: b[j++] });
  return out;
}

/** Top-level fields whose values differ. */
export function changedFields(a, b) {
  const keys = new Set([...Object.keys(a || {}), ...Object.keys(b || {})]);
  return [...keys].filter((k) => canonical(a && a[k]) !== canonical(b && b[k])).sort();
}
