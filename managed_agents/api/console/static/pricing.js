// List prices used for the console's cost *estimates*, USD per million tokens.
//
// Source: Anthropic's public price list, https://platform.claude.com/docs/en/about-claude/pricing and the
// per-model overview pages (platform.claude.com/docs/en/models/<model>/overview), read 2026-11-21.
// Columns: input, 5-minute cache write, 1-hour cache write, cache read (hits and refreshes), output.
// Not included: Batch API discounts, `inference_geo` surcharges, fast mode, long-prompt tiers, server tool fees.
// A model that is not listed here gets no estimate (shown as "—") rather than a guessed one. When the server
// reports `usage.list_cost` on a session, the console shows that instead of this estimate.
// Keep this table the only place prices live; update the date above when you change it.

export const PRICES_AS_OF = "2026-11-21";

const row = (input, write5m, write1h, read, output) => ({ input, write5m, write1h, read, output });

export const PRICES = {
  "claude-opus-5": row(5, 6.25, 10, 0.5, 25),
  "claude-opus-4-8": row(5, 6.25, 10, 0.5, 25),
  "claude-opus-4-7": row(5, 6.25, 10, 0.5, 25),
  "claude-opus-4-6": row(5, 6.25, 10, 0.5, 25),
  "claude-opus-4-5": row(5, 6.25, 10, 0.5, 25),
  "claude-opus-4-1": row(15, 18.75, 30, 1.5, 75),
  "claude-opus-4-0": row(15, 18.75, 30, 1.5, 75),
  // Sonnet 5.5: the overview page read on the date above lists a $0.20 cache read.
  "claude-sonnet-5-5": row(2, 2.5, 4, 0.2, 10),
  "claude-sonnet-5": row(2, 2.5, 4, 0.2, 10),
  "claude-sonnet-4-6": row(3, 3.75, 6, 0.3, 15),
  "claude-sonnet-4-5": row(3, 3.75, 6, 0.3, 15),
  "claude-sonnet-4-0": row(3, 3.75, 6, 0.3, 15),
  "claude-haiku-4-5": row(1, 1.25, 2, 0.1, 5),
  "claude-3-5-haiku": row(0.8, 1, 1.6, 0.08, 4),
};

const ALIASES = { "claude-opus-4": "claude-opus-4-0", "claude-sonnet-4": "claude-sonnet-4-0" };

const resolved = new Map(); // model id -> price row or null

/** The price row of a model id (`claude-sonnet-4-5-20250929` → claude-sonnet-4-5), or null. */
export function priceFor(modelId) {
  if (!modelId) return null;
  let row = resolved.get(modelId); // a trace prices every model request with the same id
  if (row === undefined) {
    let id = String(modelId).toLowerCase().replace(/-\d{8}$/, "").replace(/-latest$/, "");
    id = ALIASES[id] || id;
    row = PRICES[id] || null;
    resolved.set(modelId, row);
  }
  return row;
}

/**
 * Estimated USD cost of a usage block. Accepts both shapes: the session's `usage` (cache_creation split into
 * ephemeral_5m/1h) and a model request's `model_usage` (cache_creation_input_tokens, priced as 5-minute writes).
 * Returns null when the model has no price.
 */
export function estimateCost(modelId, usage) {
  const p = priceFor(modelId);
  if (!p || !usage) return null;
  const cc = usage.cache_creation || {};
  const write5m = (cc.ephemeral_5m_input_tokens || 0) + (usage.cache_creation_input_tokens || 0);
  const write1h = cc.ephemeral_1h_input_tokens || 0;
  const dollars =
    (usage.input_tokens || 0) * p.input +
    write5m * p.write5m +
    write1h * p.write1h +
    (usage.cache_read_input_tokens || 0) * p.read +
    (usage.output_tokens || 0) * p.output;
  return dollars / 1e6;
}

export function formatCost(dollars) {
  if (dollars === null || dollars === undefined) return "—";
  if (dollars === 0) return "$0";
  if (dollars < 0.01) return `$${dollars.toFixed(4)}`;
  return `$${dollars.toFixed(2)}`;
}

/** Server-reported list cost ({amount in minor units as a string, currency}) or the estimate. */
export function sessionCost(session) {
  const lc = session.usage && session.usage.list_cost;
  if (lc && lc.amount !== undefined && lc.currency) {
    return { text: `${(Number(lc.amount) / 100).toFixed(2)} ${lc.currency}`, estimated: false };
  }
  const model = session.agent && session.agent.model && (session.agent.model.id || session.agent.model);
  const est = estimateCost(model, session.usage);
  return { text: formatCost(est), estimated: est !== null };
}
