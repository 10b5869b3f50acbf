// A VoicePersonality as YAML for `kubectl apply`: maps, lists and scalars are all a spec has.
// Strings are written JSON-quoted, which YAML reads as double-quoted scalars.

function scalar(value) {
  return typeof value === "string" ? JSON.stringify(value) : String(value);
}

function lines(value, indent) {
  const pad = "  ".repeat(indent);
  if (Array.isArray(value)) {
    if (!value.length) return [`${pad}[]`];
    return value.flatMap((item) => {
      if (item !== null && typeof item === "object") {
        const [first, ...rest] = lines(item, indent + 1);
        return [`${pad}- ${first.trimStart()}`, ...rest];
      }
      return [`${pad}- ${scalar(item)}`];
    });
  }
  const entries = Object.entries(value).filter(([, v]) => v !== null && v !== undefined);
  if (!entries.length) return [`${pad}{}`];
  return entries.flatMap(([k, v]) => {
    if (v !== null && typeof v === "object" && (Array.isArray(v) ? v.length : Object.keys(v).length)) {
      return [`${pad}${k}:`, ...lines(v, indent + 1)];
    }
    return [`${pad}${k}: ${typeof v === "object" ? (Array.isArray(v) ? "[]" : "{}") : scalar(v)}`];
  });
}

export function toYaml(document) {
  return `${lines(document, 0).join("\n")}\n`;
}
