// Form fields generated from an engine's settings model as the API describes it (its JSON
// schema in /openapi.json): bounds become min/max, descriptions (which carry the units) hints.
import { el } from "./dom.js";

/** The schema a `$ref` (or an `anyOf` with null, i.e. optional) points at. */
export function resolve(schemas, node) {
  if (!node) return {};
  if (node.$ref) return resolve(schemas, schemas[node.$ref.split("/").pop()]);
  if (node.allOf?.length === 1) return resolve(schemas, node.allOf[0]);
  if (node.anyOf) {
    const real = node.anyOf.filter((n) => n.type !== "null");
    if (real.length === 1) return { ...resolve(schemas, real[0]), nullable: true, description: node.description, title: node.title };
  }
  return node;
}

/** The settings schema of `engine` from the components of /openapi.json. */
export function settingsSchema(schemas, engine) {
  const provider = resolve(schemas, schemas.Providers.properties[engine]);
  return resolve(schemas, provider.properties.settings);
}

function bounds(field) {
  const parts = [];
  if (field.minimum !== undefined) parts.push(`≥ ${field.minimum}`);
  if (field.exclusiveMinimum !== undefined) parts.push(`> ${field.exclusiveMinimum}`);
  if (field.maximum !== undefined) parts.push(`≤ ${field.maximum}`);
  if (field.exclusiveMaximum !== undefined) parts.push(`< ${field.exclusiveMaximum}`);
  return parts.join(", ");
}

/** One labelled control per setting; `path` is the field's place in the spec (as the API's errors name it). */
export function settingsFields(schemas, schema, values, pathPrefix) {
  return Object.entries(schema.properties || {}).map(([name, raw]) => {
    const field = resolve(schemas, raw);
    const path = `${pathPrefix}.${name}`;
    const id = `field-${path.replaceAll(".", "-")}`;
    const value = values?.[name];
    const hint = [field.description || raw.description, bounds(field), field.nullable ? "empty: the default" : "",
      field.default !== undefined ? `default ${field.default}` : ""].filter(Boolean).join("; ");
    let control;
    if (field.type === "boolean") {
      control = el("input", { id, type: "checkbox", checked: value ?? field.default ?? false, "data-kind": "boolean" });
    } else if (field.enum) {
      control = el("select", { id, "data-kind": "string" },
        field.nullable ? el("option", { value: "" }, "(default)") : null,
        field.enum.map((v) => el("option", { value: v, selected: v === value }, v)));
    } else if (field.type === "number" || field.type === "integer") {
      control = el("input", { id, type: "number", step: field.type === "integer" ? 1 : "any", "data-kind": field.type,
        min: field.minimum ?? field.exclusiveMinimum, max: field.maximum ?? field.exclusiveMaximum, value: value ?? "" });
    } else {
      control = el("input", { id, type: "text", "data-kind": "string", value: value ?? "" });
    }
    control.setAttribute("data-setting", name);
    control.setAttribute("aria-describedby", `${id}-hint ${id}-error`);
    return el("div", { class: "field" },
      el("label", { for: id }, name),
      control,
      el("small", { id: `${id}-hint`, class: "muted" }, hint),
      el("span", { id: `${id}-error`, class: "field-error", "data-error-for": path }));
  });
}

/** The settings the controls hold; an empty optional field is left out (the engine's default). */
export function settingsValues(container) {
  const values = {};
  for (const control of container.querySelectorAll("[data-setting]")) {
    const name = control.getAttribute("data-setting");
    const kind = control.getAttribute("data-kind");
    if (kind === "boolean") values[name] = control.checked;
    else if (control.value === "") continue;
    // A number the browser cannot read goes as typed: the API says what is wrong with it.
    else if (kind === "number" || kind === "integer") values[name] = Number.isNaN(Number(control.value)) ? control.value : Number(control.value);
    else values[name] = control.value;
  }
  return values;
}
