package onnxgen

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/modelserver/modelserver/internal/phi3assets"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

func TestPhi3ConfigValidate(t *testing.T) {
	with := func(edit func(*Phi3Config)) Phi3Config {
		c := Phi3Tiny()
		edit(&c)
		return c
	}
	cases := []struct {
		name  string
		c     Phi3Config
		valid bool
	}{
		{"tiny", Phi3Tiny(), true},
		{"mid", Phi3Mid(), true},
		{"tiny int4", with(func(c *Phi3Config) { c.Precision = Phi3Int4 }), true},
		{"mid int4", with(func(c *Phi3Config) { *c = Phi3Mid(); c.Precision = Phi3Int4 }), true},
		{"vocab below the tokenizer's", with(func(c *Phi3Config) { c.VocabSize = 32010 }), false},
		{"zero layers", with(func(c *Phi3Config) { c.Layers = 0 }), false},
		{"zero context", with(func(c *Phi3Config) { c.ContextLength = 0 }), false},
		{"context beyond 128k", with(func(c *Phi3Config) { c.ContextLength = 131073 }), false},
		{"context of 128k", with(func(c *Phi3Config) { c.ContextLength = 131072 }), true},
		{"too many parameters", with(func(c *Phi3Config) { c.Layers = 1 << 20; c.Hidden, c.Heads = 1024, 64 }), false},
		{"hidden size that overflows", with(func(c *Phi3Config) { c.HeadDim, c.Hidden = 1<<40, 4<<40 }), false},
		{"vocabulary that overflows", with(func(c *Phi3Config) { c.VocabSize = 1 << 60 }), false},
		{"heads not a multiple of kv heads", with(func(c *Phi3Config) { c.KVHeads = 3 }), false},
		{"hidden not heads × head dim", with(func(c *Phi3Config) { c.Hidden = 80 }), false},
		{"head dim 8", with(func(c *Phi3Config) { c.HeadDim, c.Hidden = 8, 32 }), false},
		{"head dim 24", with(func(c *Phi3Config) { c.HeadDim, c.Hidden = 24, 96 }), false},
		{"unknown precision", with(func(c *Phi3Config) { c.Precision = "bf16" }), false},
		{"fp16", with(func(c *Phi3Config) { c.Precision = Phi3FP16 }), true},
		{"fp16 mha", with(func(c *Phi3Config) { c.Precision, c.Attention, c.KVHeads = Phi3FP16, Phi3MHA, c.Heads }), true},
		{"block not a power of two", with(func(c *Phi3Config) { c.Precision, c.BlockSize = Phi3Int4, 48 }), false},
		{"block 8", with(func(c *Phi3Config) { c.Precision, c.BlockSize = Phi3Int4, 8 }), false},
		{"block does not divide the MLP", with(func(c *Phi3Config) { c.Precision, c.Intermediate = Phi3Int4, 144 }), false},
		{"block does not divide hidden", with(func(c *Phi3Config) { c.Precision, c.BlockSize = Phi3Int4, 128 }), false},
		{"block size ignored in fp32", with(func(c *Phi3Config) { c.BlockSize = 48 }), true},
		{"accuracy level 5", with(func(c *Phi3Config) { c.Precision, c.AccuracyLevel = Phi3Int4, 5 }), false},
		{"gqa", with(func(c *Phi3Config) { c.Attention = Phi3GQA }), true},
		{"mha with as many kv heads as heads", with(func(c *Phi3Config) { c.Attention, c.KVHeads = Phi3MHA, 4 }), true},
		{"mha with fewer kv heads", with(func(c *Phi3Config) { c.Attention = Phi3MHA }), false},
		{"unknown attention", with(func(c *Phi3Config) { c.Attention = "flash" }), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.c.Validate()
			if tc.valid && err != nil {
				t.Fatalf("Validate() = %v, want nil", err)
			}
			if !tc.valid && !errors.Is(err, ErrInvalidPhi3Config) {
				t.Fatalf("Validate() = %v, want ErrInvalidPhi3Config", err)
			}
			if !tc.valid {
				if err := WritePhi3Dir(filepath.Join(t.TempDir(), "m"), tc.c); !errors.Is(err, ErrInvalidPhi3Config) {
					t.Fatalf("WritePhi3Dir() = %v, want ErrInvalidPhi3Config", err)
				}
			}
		})
	}
}

// phi3DataBytes is the size of the external data file of c: every weight
// and both rotary caches, each tensor padded to the 4096-byte alignment.
// Norm weights of fewer than 1024 bytes stay inline.
func phi3DataBytes(c Phi3Config) int64 {
	var total int64
	// size is the bytes of a float in the graph: the weights, caches and
	// norms (and int4's scales) of the precision.
	size := 4
	if c.Precision == Phi3FP16 {
		size = 2
	}
	add := func(n int64) {
		if n < phi3MinExternalBytes {
			return
		}
		total = (total+externalAlign-1)/externalAlign*externalAlign + n
	}
	weight := func(k, n int) {
		if c.Precision == Phi3Int4 {
			add(int64(k * n / 2))
			add(int64(4 * n * k / c.BlockSize))
			return
		}
		add(int64(size * k * n))
	}
	add(int64(size * c.ContextLength * c.HeadDim / 2))
	add(int64(size * c.ContextLength * c.HeadDim / 2))
	add(int64(size * c.VocabSize * c.Hidden))
	add(int64(size * c.Hidden))
	for range c.Layers {
		weight(c.Hidden, c.Hidden+2*c.KVHeads*c.HeadDim)
		weight(c.Hidden, c.Hidden)
		add(int64(size * c.Hidden))
		weight(c.Hidden, c.Intermediate)
		weight(c.Hidden, c.Intermediate)
		weight(c.Intermediate, c.Hidden)
		add(int64(size * c.Hidden))
	}
	weight(c.Hidden, c.VocabSize)
	return total
}

// TestPhi3Sizes pins the sizes the presets promise, from the configuration
// alone (the mid model is too large to generate in a unit test).
func TestPhi3Sizes(t *testing.T) {
	midInt4 := Phi3Mid()
	midInt4.Precision = Phi3Int4
	tinyInt4 := Phi3Tiny()
	tinyInt4.Precision = Phi3Int4
	tinyFP16 := Phi3Tiny()
	tinyFP16.Precision = Phi3FP16
	cases := []struct {
		name   string
		c      Phi3Config
		params int64
		// data is the external data file's size, rounded to MiB.
		dataMiB int64
	}{
		{"tiny", Phi3Tiny(), 2*32064*64 + 2*(64*128+64*64+3*64*128) + 5*64, 16},
		{"tiny int4", tinyInt4, 2*32064*64 + 2*(64*128+64*64+3*64*128) + 5*64, 9},
		{"tiny fp16", tinyFP16, 2*32064*64 + 2*(64*128+64*64+3*64*128) + 5*64, 8},
		{"mid", Phi3Mid(), 2*32064*1024 + 8*(1024*2048+1024*1024+3*1024*2816) + 17*1024, 611},
		{"mid int4", midInt4, 2*32064*1024 + 8*(1024*2048+1024*1024+3*1024*2816) + 17*1024, 202},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.c.Params(); got != tc.params {
				t.Errorf("Params() = %d, want %d", got, tc.params)
			}
			if got := int64(math.Round(float64(phi3DataBytes(tc.c)) / (1 << 20))); got != tc.dataMiB {
				t.Errorf("data file ≈ %d MiB, want %d", got, tc.dataMiB)
			}
		})
	}
}

// TestWritePhi3Dir checks every file against the export's conventions: the
// model's external data file has the size the weights need, the JSON files
// match golden copies, the tokenizer is Phi-3's, and the tokenizer config
// differs from the embedded one only in its chat template.
func TestWritePhi3Dir(t *testing.T) {
	for _, variant := range []string{Phi3FP32, Phi3Int4, Phi3FP16, Phi3MHA} {
		t.Run(variant, func(t *testing.T) {
			c := Phi3Tiny()
			if variant == Phi3MHA {
				c.Attention, c.KVHeads = Phi3MHA, c.Heads
			} else {
				c.Precision = variant
			}
			dir := t.TempDir()
			if err := WritePhi3Dir(dir, c); err != nil {
				t.Fatal(err)
			}
			info, err := os.Stat(filepath.Join(dir, Phi3DataFile))
			if err != nil {
				t.Fatal(err)
			}
			if want := phi3DataBytes(c); info.Size() != want {
				t.Errorf("%s holds %d bytes, want %d", Phi3DataFile, info.Size(), want)
			}
			model, err := os.ReadFile(filepath.Join(dir, Phi3ModelFile))
			if err != nil {
				t.Fatal(err)
			}
			if len(model) > 64<<10 {
				t.Errorf("%s is %d bytes: weights were stored inline", Phi3ModelFile, len(model))
			}
			for _, name := range []string{Phi3GenAIConfigFile, Phi3HFConfigFile} {
				golden(t, filepath.Join(dir, name), filepath.Join("testdata", "phi3_tiny_"+variant+"_"+name))
			}
			tok, err := os.ReadFile(filepath.Join(dir, Phi3TokenizerFile))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(tok, phi3assets.TokenizerJSON) {
				t.Errorf("%s differs from phi3assets.TokenizerJSON", Phi3TokenizerFile)
			}
			checkTokenizerConfig(t, filepath.Join(dir, Phi3TokenizerConfigFile))
		})
	}
}

func checkTokenizerConfig(t *testing.T, path string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var got, embedded map[string]any
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(phi3assets.TokenizerConfigJSON, &embedded); err != nil {
		t.Fatal(err)
	}
	if got["chat_template"] != phi3ChatTemplate {
		t.Errorf("chat_template = %q, want Phi-3-mini's", got["chat_template"])
	}
	delete(got, "chat_template")
	delete(embedded, "chat_template")
	a, _ := json.Marshal(got)
	b, _ := json.Marshal(embedded)
	if !bytes.Equal(a, b) {
		t.Errorf("tokenizer_config.json differs from the embedded one beyond the chat template")
	}
}

func golden(t *testing.T, gotPath, goldenPath string) {
	t.Helper()
	got, err := os.ReadFile(gotPath)
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile(goldenPath, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(goldenPath)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from %s:\n%s", filepath.Base(gotPath), goldenPath, got)
	}
}

// TestPhi3Deterministic checks that a seed fixes the files and that another
// seed changes only the weights.
func TestPhi3Deterministic(t *testing.T) {
	write := func(seed uint64) (model, data []byte) {
		c := Phi3Tiny()
		c.Seed = seed
		dir := t.TempDir()
		if err := WritePhi3Dir(dir, c); err != nil {
			t.Fatal(err)
		}
		model, err := os.ReadFile(filepath.Join(dir, Phi3ModelFile))
		if err != nil {
			t.Fatal(err)
		}
		data, err = os.ReadFile(filepath.Join(dir, Phi3DataFile))
		if err != nil {
			t.Fatal(err)
		}
		return model, data
	}
	m1, d1 := write(3)
	m2, d2 := write(3)
	if !bytes.Equal(m1, m2) || !bytes.Equal(d1, d2) {
		t.Error("the same seed gave different files")
	}
	m3, d3 := write(4)
	if bytes.Equal(d1, d3) {
		t.Error("another seed gave the same weights")
	}
	if len(d1) != len(d3) || len(m1) != len(m3) {
		t.Error("another seed changed the layout")
	}
}

// TestQuantizeInt4 checks the symmetric 4-bit rounding: every dequantized
// weight is within one scale step of the original (half a step unless it was
// clamped at 15), the block's extreme value is exact, and the packed nibbles
// hold the dequantized values.
func TestQuantizeInt4(t *testing.T) {
	const block = 32
	r := newRand(1)
	m := &matrix{rows: 96, cols: 5, values: uniform(r, 96*5, 1)}
	m.values[7*5+2] = 0.99 // a large value in column 2, block 0
	for i := 64; i < 96; i++ {
		m.values[i*5+4] = 0 // an all-zero block
	}
	original := append([]float32(nil), m.values...)
	m.quantize(block)
	blocks := m.rows / block
	for n := range m.cols {
		for j := range blocks {
			scale := float64(m.scales[n*blocks+j])
			for i := range block {
				k := j*block + i
				q := int(m.packed[(n*blocks+j)*block/2+i/2]>>(4*(i%2))) & 0xf
				deq := float64(m.values[k*m.cols+n])
				if want := float64(float32(q-8) * m.scales[n*blocks+j]); deq != want {
					t.Fatalf("column %d row %d: nibble %d gives %g, values hold %g", n, k, q, want, deq)
				}
				limit := math.Abs(scale) / 2
				if q == 15 {
					limit = math.Abs(scale)
				}
				if d := math.Abs(deq - float64(original[k*m.cols+n])); d > limit*(1+1e-6) {
					t.Errorf("column %d row %d: error %g exceeds %g", n, k, d, limit)
				}
			}
		}
	}
	if got := m.values[7*5+2]; got != original[7*5+2] {
		t.Errorf("block extreme %g dequantizes to %g", original[7*5+2], got)
	}
	if m.scales[4*blocks+2] != 0 {
		t.Errorf("an all-zero block has scale %g", m.scales[4*blocks+2])
	}
}
