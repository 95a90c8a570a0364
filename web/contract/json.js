// JSON with exact integers. The wire contract's wall-clock nanoseconds (about 1.8e18) are
// above 2^53, where a JavaScript number rounds: `JSON.parse` would make stamps that differ
// compare equal (docs/PROTOCOL.md, "Common rules"). `parse` returns every integer outside
// the safe range as a BigInt (and the others as numbers); `stringify` writes BigInts as bare
// JSON integers. Object members keep their order, as in the text.

export class JsonError extends Error {}

/** Parse JSON text; integers beyond ±(2^53 − 1) become BigInts. */
export function parse(text) {
  let i = 0;
  const fail = (what) => {
    throw new JsonError(`${what} at offset ${i}`);
  };
  const ws = () => {
    while (i < text.length && " \t\n\r".includes(text[i])) i++;
  };
  const value = (depth) => {
    if (depth > 128) fail("nested too deeply");
    ws();
    const c = text[i];
    if (c === "{") {
      i++;
      const out = {};
      ws();
      if (text[i] === "}") {
        i++;
        return out;
      }
      for (;;) {
        ws();
        if (text[i] !== '"') fail("expected a member name");
        const key = string();
        ws();
        if (text[i] !== ":") fail("expected ':'");
        i++;
        const v = value(depth + 1);
        // A repeated member: the last one counts, as in the reference decoder.
        Object.defineProperty(out, key, { value: v, enumerable: true, writable: true, configurable: true });
        ws();
        if (text[i] === ",") {
          i++;
          continue;
        }
        if (text[i] === "}") {
          i++;
          return out;
        }
        fail("expected ',' or '}'");
      }
    }
    if (c === "[") {
      i++;
      const out = [];
      ws();
      if (text[i] === "]") {
        i++;
        return out;
      }
      for (;;) {
        out.push(value(depth + 1));
        ws();
        if (text[i] === ",") {
          i++;
          continue;
        }
        if (text[i] === "]") {
          i++;
          return out;
        }
        fail("expected ',' or ']'");
      }
    }
    if (c === '"') return string();
    if (text.startsWith("true", i)) return (i += 4), true;
    if (text.startsWith("false", i)) return (i += 5), false;
    if (text.startsWith("null", i)) return (i += 4), null;
    return number();
  };
  const string = () => {
    i++;
    let out = "";
    for (;;) {
      if (i >= text.length) fail("unterminated string");
      const c = text[i];
      if (c === '"') {
        i++;
        return out;
      }
      if (c < " ") fail("control character in a string");
      if (c === "\\") {
        const e = text[i + 1];
        const simple = { '"': '"', "\\": "\\", "/": "/", b: "\b", f: "\f", n: "\n", r: "\r", t: "\t" };
        if (e in simple) {
          out += simple[e];
          i += 2;
        } else if (e === "u") {
          const hex = text.slice(i + 2, i + 6);
          if (!/^[0-9a-fA-F]{4}$/.test(hex)) fail("bad \\u escape");
          out += String.fromCharCode(parseInt(hex, 16));
          i += 6;
        } else fail("bad escape");
      } else {
        out += c;
        i++;
      }
    }
  };
  const number = () => {
    const m = /^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/.exec(text.slice(i, i + 400));
    if (!m) fail("unexpected character");
    i += m[0].length;
    if (m[2] === undefined && m[3] === undefined) {
      const n = Number(m[0]);
      return Number.isSafeInteger(n) ? n : BigInt(m[0]);
    }
    return Number(m[0]);
  };
  const out = value(0);
  ws();
  if (i !== text.length) fail("trailing characters");
  return out;
}

/** Whether `v` is a whole number (a safe-integer number or a BigInt). */
export function isInteger(v) {
  return typeof v === "bigint" || (typeof v === "number" && Number.isInteger(v));
}

/** A whole number as a BigInt (for exact comparison); `null` when it is not one. */
export function toBig(v) {
  if (typeof v === "bigint") return v;
  if (typeof v === "number" && Number.isInteger(v)) return BigInt(v);
  return null;
}

/** Compact JSON, BigInts as bare integers, members in their order. */
export function stringify(v) {
  if (typeof v === "bigint") return v.toString();
  if (v === null || typeof v === "boolean") return String(v);
  if (typeof v === "number") {
    if (!Number.isFinite(v)) throw new JsonError("not a finite number");
    return JSON.stringify(v);
  }
  if (typeof v === "string") return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map(stringify).join(",")}]`;
  if (typeof v === "object") {
    const parts = [];
    for (const [k, x] of Object.entries(v)) {
      if (x === undefined) continue;
      parts.push(`${JSON.stringify(k)}:${stringify(x)}`);
    }
    return `{${parts.join(",")}}`;
  }
  throw new JsonError(`cannot encode ${typeof v}`);
}
