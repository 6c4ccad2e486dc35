package recording

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"

	"github.com/klauspost/compress/zstd"
)

// zstdMagic starts every zstd frame; a plain recording starts with '{'.
var zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}

// zstdSuffix ends the name of a compressed recording file.
const zstdSuffix = ".zst"

// maxWindow caps the memory a reader spends on one frame. The writer's
// frames hold at most about frameTarget bytes each.
const maxWindow = 64 << 20

// newEncoder returns the encoder a Recorder shares among its recordings:
// the fastest level, one frame per EncodeAll, no per-recording state.
func newEncoder() (*zstd.Encoder, error) {
	enc, err := zstd.NewWriter(nil,
		zstd.WithEncoderLevel(zstd.SpeedFastest),
		zstd.WithEncoderConcurrency(poolSize()),
		// No frame checksums: the SHA-256 sealed into the audit trail
		// covers every byte, and xxhash would cost an eighth of the work.
		zstd.WithEncoderCRC(false),
		zstd.WithLowerEncoderMem(true),
		zstd.WithWindowSize(2*frameTarget),
	)
	if err != nil {
		return nil, fmt.Errorf("recording: zstd encoder: %w", err)
	}
	// Warm every encoder state now (sequential calls take them in turn),
	// so that recording allocates nothing later: each state's history and
	// tables are sized by the window, not by the input.
	warm := make([]byte, 2*maxCompressedBlock)
	var dst []byte
	for range poolSize() {
		dst = enc.EncodeAll(warm, dst[:0])
	}
	return enc, nil
}

// maxCompressedBlock is zstd's largest block: a larger input takes the
// encoder's multi-block path.
const maxCompressedBlock = 128 << 10

// poolSize is how many workers a pool runs, and so how many EncodeAll calls
// the shared encoder runs at once.
func poolSize() int { return max(1, min(runtime.GOMAXPROCS(0), maxWorkers)) }

// ext is the file name extension of a recording of the given plain
// extension (".cast", ".jsonl") under r's compression.
func (r *Recorder) ext(plain string) string {
	if r.compression == CompressionZstd {
		return plain + zstdSuffix
	}
	return plain
}

// Open opens the recording file at path for reading its plain content
// (asciicast or JSON lines), whether it is stored compressed or not: what
// `asciinema play` reads. A compressed recording whose last frame is cut
// short, as a proxy that stopped mid-write leaves it, reads up to where
// the cut frame starts (or further, if its complete blocks decode), then
// ends with ErrTruncated. Frames carry no checksum, so not every damage is
// an error here: VerifyFile, against the sealed SHA-256, is the check.
func Open(path string) (io.ReadCloser, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("recording: open: %w", err)
	}
	r, err := NewReader(f)
	if err != nil {
		f.Close()
		return nil, err
	}
	return &fileReader{Reader: r, f: f, r: r}, nil
}

// fileReader closes both the decoder and the file.
type fileReader struct {
	io.Reader
	f *os.File
	r io.ReadCloser
}

func (fr *fileReader) Close() error {
	fr.r.Close()
	return fr.f.Close()
}

// NewReader returns the plain content of the recording that r holds,
// decompressing it if it starts with a zstd frame. Close releases the
// decoder; it does not close r. See Open for truncated files.
func NewReader(r io.Reader) (io.ReadCloser, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	head, err := br.Peek(len(zstdMagic))
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("recording: read: %w", err)
	}
	if !bytes.Equal(head, zstdMagic) {
		return io.NopCloser(br), nil
	}
	dec, err := zstd.NewReader(br,
		zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderLowmem(true),
		zstd.WithDecoderMaxWindow(maxWindow),
	)
	if err != nil {
		return nil, fmt.Errorf("recording: zstd decoder: %w", err)
	}
	return &zstdReader{dec: dec}, nil
}

// zstdReader turns a zstd stream cut short into ErrTruncated.
type zstdReader struct {
	dec *zstd.Decoder
	err error // sticky: io.EOF, ErrTruncated or a decode error
}

func (z *zstdReader) Read(p []byte) (int, error) {
	if z.err != nil {
		return 0, z.err
	}
	n, err := z.dec.Read(p)
	switch {
	case err == nil:
	case errors.Is(err, io.EOF):
		z.err = io.EOF
	case errors.Is(err, io.ErrUnexpectedEOF):
		z.err = ErrTruncated
	default:
		z.err = fmt.Errorf("recording: decompress: %w", err)
	}
	return n, z.err
}

func (z *zstdReader) Close() error {
	z.dec.Close()
	return nil
}
