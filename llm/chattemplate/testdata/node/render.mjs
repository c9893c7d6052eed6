// Renders chat-template cases with @huggingface/jinja, the Jinja
// implementation of transformers.js, for llm/chattemplate's interop test.
//
// Usage: node render.mjs cases.json
// cases.json: [{"name": ..., "template": ..., "variables": {...}}, ...]
// stdout: [{"name": ..., "output": ...} or {"name": ..., "error": ...}, ...]
import { readFileSync } from "node:fs";
import { Template } from "@huggingface/jinja";

const cases = JSON.parse(readFileSync(process.argv[2], "utf8"));
const results = cases.map(({ name, template, variables }) => {
	try {
		return { name, output: new Template(template).render(variables) };
	} catch (err) {
		return { name, error: String(err?.message ?? err) };
	}
});
process.stdout.write(JSON.stringify(results));
