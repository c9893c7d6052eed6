// Package phi3assets embeds the Phi-3 tokenizer files (MIT License,
// Copyright (c) Microsoft Corporation; see SOURCE.md), so the tiny Phi-3 test
// model generator and the tokenizer tests work offline from a clean clone.
//
// The byte slices are shared: callers must not modify them.
package phi3assets

import _ "embed"

// TokenizerJSON is the Hugging Face tokenizer.json of the Phi-3 family.
//
//go:embed tokenizer.json
var TokenizerJSON []byte

// TokenizerConfigJSON is the matching tokenizer_config.json. Its chat template
// is Phi-3-vision's, not Phi-3-mini's.
//
//go:embed tokenizer_config.json
var TokenizerConfigJSON []byte
