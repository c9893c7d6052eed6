// Reference encoder for the llm/tokenizer interop test: reads a tokenizer.json,
// a tokenizer_config.json and a JSON list of texts, and prints for each text
// the ids with and without special tokens and the decoded ids.
//
// usage: node reference.mjs tokenizer.json tokenizer_config.json texts.json
import { readFileSync } from "node:fs";
import { Tokenizer } from "@huggingface/tokenizers";

const [tokenizerPath, configPath, textsPath] = process.argv.slice(2);
const tokenizer = new Tokenizer(
  JSON.parse(readFileSync(tokenizerPath, "utf8")),
  JSON.parse(readFileSync(configPath, "utf8")),
);
const texts = JSON.parse(readFileSync(textsPath, "utf8"));

// decode rejects an empty list; the empty text decodes to "".
const decode = (ids, skip) =>
  ids.length === 0
    ? ""
    : tokenizer.decode(ids, { skip_special_tokens: skip, clean_up_tokenization_spaces: false });

const results = texts.map((text) => {
  const ids = tokenizer.encode(text).ids;
  return {
    ids,
    plain: tokenizer.encode(text, { add_special_tokens: false }).ids,
    decoded: decode(ids, false),
    decoded_skip: decode(ids, true),
  };
});
process.stdout.write(JSON.stringify(results));
