// Package tokenizer encodes and decodes text with Hugging Face
// tokenizer.json files, in pure Go. It is exact (id for id, byte for byte)
// for the SentencePiece-style BPE tokenizers of the Llama family that Phi-3
// uses: a BPE model with byte_fallback, the Prepend/Replace normalizers or the
// Metaspace pre-tokenizer, a TemplateProcessing post-processor and the
// Replace/ByteFallback/Fuse/Strip or Metaspace decoders.
//
// Load rejects every other component (ByteLevel, WordPiece, Unigram, regex
// patterns, ...) with an error wrapping ErrUnsupported that names it, rather
// than producing different ids from the reference implementation.
//
// Contract:
//   - A Tokenizer is immutable after Load and safe for concurrent use.
//   - Encode follows the reference pipeline: the text is split on added
//     tokens (leftmost, then longest match; an rstrip token swallows the
//     whitespace after it, an lstrip token the whitespace before it), every
//     other segment is normalized and pre-tokenized on its own, BPE applies
//     merges by rank, and a character missing from the vocabulary becomes
//     its UTF-8 byte tokens <0xXX>. Bytes that are not valid UTF-8 are
//     encoded as their byte tokens too. Encode never truncates or pads: the
//     caller enforces context lengths.
//   - Decode follows the reference decoder: ids outside the vocabulary are
//     dropped, and a run of byte tokens that is not valid UTF-8 decodes to
//     one U+FFFD per byte. skipSpecial drops the tokens IsSpecial reports.
//     The clean_up_tokenization_spaces post-step of some Python tokenizers is
//     not applied.
//   - A StreamDecoder belongs to one goroutine. The concatenation of its Add
//     and Flush results equals Decode of the same ids. Because a later byte
//     token can turn a whole run of byte tokens into U+FFFD, a character
//     spelled with byte tokens is returned once the run ends (a non-byte
//     token arrives, or Flush).
//   - Token ids are int32. Returned strings and slices are owned by the
//     caller; input byte slices are not retained.
package tokenizer
