package llm

import "strings"

// tokenStream turns one sequence's token ids into text, returning only
// complete UTF-8 (tokenizer.StreamDecoder implements it).
type tokenStream interface {
	Add(id int32) string
	Flush() string
}

// detokenizer is what the scheduler needs from a tokenizer.
type detokenizer interface {
	newStream() tokenStream
	// tokenText is one token's text, for log-probabilities.
	tokenText(id int32) string
}

// stopMatcher finds stop strings in a sequence's output text, also across
// token boundaries. It holds back the shortest tail of the text that could
// still begin a stop string, so no emitted text is ever part of a match.
type stopMatcher struct {
	stops []string
	held  string
}

// push adds text and returns what became final. stopped reports that a stop
// string matched: the returned text ends just before it and the sequence is
// over.
func (m *stopMatcher) push(text string) (final string, stopped bool) {
	if len(m.stops) == 0 {
		return text, false
	}
	buf := m.held + text
	cut := -1
	for _, s := range m.stops {
		if i := strings.Index(buf, s); i >= 0 && (cut < 0 || i < cut) {
			cut = i
		}
	}
	if cut >= 0 {
		m.held = ""
		return buf[:cut], true
	}
	keep := 0
	for _, s := range m.stops {
		// The longest suffix of buf that is a proper prefix of s.
		for n := min(len(s)-1, len(buf)); n > keep; n-- {
			if strings.HasSuffix(buf, s[:n]) {
				keep = n
				break
			}
		}
	}
	m.held = buf[len(buf)-keep:]
	return buf[:len(buf)-keep], false
}

// flush returns the held-back text at the end of the sequence.
func (m *stopMatcher) flush() string {
	h := m.held
	m.held = ""
	return h
}
