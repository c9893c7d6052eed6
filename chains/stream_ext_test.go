package chains_test

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/modelserver/modelserver/chains"
)

type StreamInput struct {
	N int `json:"n"`
	// FailAt makes the producer fail before item FailAt (0: never), or
	// panic before item -FailAt when negative.
	FailAt int `json:"fail_at,omitempty"`
}

type Item struct {
	Index int    `json:"index"`
	Word  string `json:"word"`
}

// Streamer streams items; its stream ends cleanly when the producer fails,
// as Truss does.
type Streamer struct{}

func (Streamer) RunRemote(ctx context.Context, in StreamInput) (iter.Seq2[Item, error], error) {
	if in.N < 0 {
		return nil, chains.ValueError("n must not be negative")
	}
	return func(yield func(Item, error) bool) {
		for i := range in.N {
			if in.FailAt > 0 && i == in.FailAt {
				yield(Item{}, errors.New("producer failed"))
				return
			}
			if in.FailAt < 0 && i == -in.FailAt {
				panic("producer panicked")
			}
			if !yield(Item{Index: i, Word: fmt.Sprintf("wörd-%d", i)}, nil) {
				return
			}
		}
	}, nil
}

// Words streams text.
type Words struct{}

func (Words) RunRemote(ctx context.Context, in StreamInput) (iter.Seq2[string, error], error) {
	return func(yield func(string, error) bool) {
		for i := range in.N {
			if !yield(fmt.Sprintf("ü%d ", i), nil) {
				return
			}
		}
	}, nil
}

// StreamCaller consumes both streams and reports what it got.
type StreamCaller struct {
	chains.Entrypoint
	Items chains.Dep[StreamInput, iter.Seq2[Item, error]]   `chains:"Streamer"`
	Words chains.Dep[StreamInput, iter.Seq2[string, error]] `chains:"Words"`
}

type StreamReport struct {
	Items []Item `json:"items"`
	Text  string `json:"text"`
}

func (s *StreamCaller) RunRemote(ctx context.Context, in StreamInput) (StreamReport, error) {
	var rep StreamReport
	items, err := s.Items.RunRemote(ctx, in)
	if err != nil {
		return rep, err
	}
	for it, err := range items {
		if err != nil {
			return rep, err
		}
		rep.Items = append(rep.Items, it)
	}
	words, err := s.Words.RunRemote(ctx, StreamInput{N: in.N})
	if err != nil {
		return rep, err
	}
	var b strings.Builder
	for w, err := range words {
		if err != nil {
			return rep, err
		}
		b.WriteString(w)
	}
	rep.Text = b.String()
	return rep, nil
}

func streamChainlets() []any { return []any{&StreamCaller{}, &Streamer{}, &Words{}} }

func wantReport(n int) StreamReport {
	var rep StreamReport
	var b strings.Builder
	for i := range n {
		rep.Items = append(rep.Items, Item{Index: i, Word: fmt.Sprintf("wörd-%d", i)})
		fmt.Fprintf(&b, "ü%d ", i)
	}
	rep.Text = b.String()
	return rep
}

func TestStreamingRemoteAndLocal(t *testing.T) {
	remote := func(t *testing.T) *chains.Dep[StreamInput, StreamReport] {
		eps := servedChain(t, streamChainlets(), nil, "")
		return client[StreamInput, StreamReport](t, "StreamCaller", eps["StreamCaller"], chains.DepOptions{})
	}
	local := func(t *testing.T) *chains.Dep[StreamInput, StreamReport] {
		c, err := chains.New(streamChainlets()...)
		if err != nil {
			t.Fatal(err)
		}
		d, err := chains.RunLocal[StreamInput, StreamReport](c, chains.LocalOptions{Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		return &d
	}
	for mode, setup := range map[string]func(*testing.T) *chains.Dep[StreamInput, StreamReport]{"remote": remote, "local": local} {
		t.Run(mode, func(t *testing.T) {
			d := setup(t)
			for _, n := range []int{0, 1, 500} {
				got, err := d.RunRemote(testContext(t), StreamInput{N: n})
				want := wantReport(n)
				if err != nil || !slices.Equal(got.Items, want.Items) || got.Text != want.Text {
					t.Errorf("n=%d: got %d items, text %d bytes, err %v; want %d items, %d bytes", n, len(got.Items), len(got.Text), err, len(want.Items), len(want.Text))
				}
			}
			// A producer failing mid-stream ends the stream early and cleanly.
			got, err := d.RunRemote(testContext(t), StreamInput{N: 10, FailAt: 4})
			if err != nil || len(got.Items) != 4 {
				t.Errorf("failing producer: %d items, %v; want the 4 items before the failure", len(got.Items), err)
			}
			got, err = d.RunRemote(testContext(t), StreamInput{N: 10, FailAt: -3})
			if err != nil || len(got.Items) != 3 {
				t.Errorf("panicking producer: %d items, %v; want the 3 items before the panic", len(got.Items), err)
			}
			// An error before streaming starts is an ordinary Chainlet error.
			_, err = d.RunRemote(testContext(t), StreamInput{N: -1})
			if !strings.Contains(fmt.Sprint(err), "ValueError: n must not be negative") {
				t.Errorf("error before streaming: %v, want the ValueError", err)
			}
		})
	}
}

func TestStreamingWireFormat(t *testing.T) {
	eps := servedChain(t, streamChainlets(), nil, "")
	resp, err := http.Post(eps["Streamer"].URL, "application/json", strings.NewReader(`{"n": 2}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got := readAll(t, resp.Body)
	item0 := `{"index":0,"word":"wörd-0"}`
	item1 := `{"index":1,"word":"wörd-1"}`
	want := "\x03" + string([]byte{0, 0, 0, byte(len(item0))}) + item0 + "\x03" + string([]byte{0, 0, 0, byte(len(item1))}) + item1
	if got != want || resp.Header.Get("Content-Type") != "application/octet-stream" || len(resp.TransferEncoding) != 1 || resp.TransferEncoding[0] != "chunked" {
		t.Errorf("stream %q %s %v, want chunked octet-stream %q", got, resp.Header.Get("Content-Type"), resp.TransferEncoding, want)
	}
}

func TestStreamingGatherQuirk(t *testing.T) {
	eps := servedChain(t, streamChainlets(), nil, "")
	for _, tt := range []struct {
		accept, agent string
		gathered      bool
	}{
		{"application/json", "python-requests/2.28", true},
		{"application/json", "OpenAI/Python 1.0", false},
		{"application/json, */*", "curl", false},
	} {
		req, _ := http.NewRequest(http.MethodPost, eps["Words"].URL, strings.NewReader(`{"n": 2}`))
		req.Header.Set("Accept", tt.accept)
		req.Header.Set("User-Agent", tt.agent)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		got := readAll(t, resp.Body)
		resp.Body.Close()
		want, wantCT := "ü0 ü1 ", "application/octet-stream"
		if tt.gathered {
			want, wantCT = `"ü0 ü1 "`, "application/json"
		}
		if got != want || resp.Header.Get("Content-Type") != wantCT || (resp.ContentLength > 0) != tt.gathered {
			t.Errorf("Accept %q, User-Agent %q: %s %q (length %d), want %s %q", tt.accept, tt.agent, resp.Header.Get("Content-Type"), got, resp.ContentLength, wantCT, want)
		}
	}
}

type Header struct {
	Title string `json:"title"`
}

type Footer struct {
	Count int `json:"count"`
}

type Page = chains.Framed[Header, Item, Footer]

// Pages streams a header, items and a footer.
type Pages struct {
	chains.Entrypoint
}

func (Pages) RunRemote(ctx context.Context, in StreamInput) (iter.Seq2[Page, error], error) {
	return func(yield func(Page, error) bool) {
		if !yield(Page{Header: &Header{Title: "words"}}, nil) {
			return
		}
		for i := range in.N {
			if !yield(Page{Item: &Item{Index: i}}, nil) {
				return
			}
		}
		yield(Page{Footer: &Footer{Count: in.N}}, nil)
	}, nil
}

func TestStreamingHeaderItemsFooter(t *testing.T) {
	c, err := chains.New(&Pages{})
	if err != nil {
		t.Fatal(err)
	}
	pages, err := chains.RunLocal[StreamInput, iter.Seq2[Page, error]](c, chains.LocalOptions{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	seq, err := pages.RunRemote(testContext(t), StreamInput{N: 2})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for p, err := range seq {
		switch {
		case err != nil:
			t.Fatal(err)
		case p.Header != nil:
			got = append(got, "header "+p.Header.Title)
		case p.Item != nil:
			got = append(got, fmt.Sprintf("item %d", p.Item.Index))
		case p.Footer != nil:
			got = append(got, fmt.Sprintf("footer %d", p.Footer.Count))
		}
	}
	if want := []string{"header words", "item 0", "item 1", "footer 2"}; !slices.Equal(got, want) {
		t.Errorf("stream %q, want %q", got, want)
	}
}
