// List prices used for the console's cost *estimates*, USD per million tokens.
//
// The table is the platform's own (managed_agents/domain/prices.py, the one budgets price requests with), served
// as ./prices.js. A model that is not listed gets no estimate (shown as "—") rather than a guessed one.

import { ALIASES, PRICES, PRICES_AS_OF } from "./prices.js";

export { PRICES, PRICES_AS_OF };

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

/**
 * A session's cost: the estimate from the price table (the platform prices budgets with the same table, and the
 * estimate keeps the fractions of a cent that the server's `usage.list_cost` rounds up), else the server's figure
 * ({amount in minor units as a string, currency}).
 */
export function sessionCost(session) {
  const model = session.agent && session.agent.model && (session.agent.model.id || session.agent.model);
  const est = estimateCost(model, session.usage);
  if (est !== null) return { text: formatCost(est), estimated: true };
  const lc = session.usage && session.usage.list_cost;
  if (lc && lc.amount !== undefined && lc.currency) {
    return { text: `${(Number(lc.amount) / 100).toFixed(2)} ${lc.currency}`, estimated: false };
  }
  return { text: formatCost(null), estimated: false };
}
