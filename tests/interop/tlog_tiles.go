// Reads a kiroku log published as C2SP tlog-tiles with the Go module mirror's own code
// (golang.org/x/mod/sumdb/tlog and sumdb/note), from a directory or an http(s) URL prefix.
//
// Usage: tlog_tiles SOURCE VKEY
//
// It verifies the checkpoint note with VKEY, computes the root for the checkpoint's size through
// tlog.TileHashReader (which authenticates every tile it reads against that root), checks every
// record of the entry bundles with ProveRecord/CheckRecord, and recomputes every tile's bytes
// with tlog.ReadTileData from the records alone, comparing them with the published ones. For a
// directory it also parses every file name with tlog.ParseTilePath. Exit 0 and "ok ..." when
// everything holds, 1 with the reason otherwise.
package main

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

const height = 8 // tlog-tiles: tiles are subtrees of height 8

var source string

func fail(format string, args ...interface{}) {
	fmt.Printf("FAIL "+format+"\n", args...)
	os.Exit(1)
}

// c2spPath maps Go's tile path (tile/8/L/N[.p/W], tile/8/data/N for records) to tlog-tiles'
// (tile/L/N[.p/W], tile/entries/N): the same encoding without the height element.
func c2spPath(t tlog.Tile) string {
	p := strings.Replace(t.Path(), "tile/8/", "tile/", 1)
	return strings.Replace(p, "tile/data/", "tile/entries/", 1)
}

func read(path string) []byte {
	if strings.HasPrefix(source, "http://") || strings.HasPrefix(source, "https://") {
		resp, err := http.Get(strings.TrimRight(source, "/") + "/" + path)
		if err != nil {
			fail("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			fail("GET %s: HTTP %d", path, resp.StatusCode)
		}
		data, err := io.ReadAll(resp.Body)
		if err != nil {
			fail("GET %s: %v", path, err)
		}
		return data
	}
	data, err := os.ReadFile(filepath.Join(source, filepath.FromSlash(path)))
	if err != nil {
		fail("read %s: %v", path, err)
	}
	return data
}

type tileReader struct{ read int }

func (r *tileReader) Height() int { return height }

func (r *tileReader) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	data := make([][]byte, len(tiles))
	for i, t := range tiles {
		data[i] = read(c2spPath(t))
		r.read++
	}
	return data, nil
}

func (r *tileReader) SaveTiles(tiles []tlog.Tile, data [][]byte) {}

func main() {
	if len(os.Args) != 3 {
		fmt.Println("usage: tlog_tiles SOURCE VKEY")
		os.Exit(2)
	}
	source = os.Args[1]

	// The checkpoint: a signed note (sumdb/note) whose text is a C2SP tlog-checkpoint body.
	verifier, err := note.NewVerifier(os.Args[2])
	if err != nil {
		fail("vkey: %v", err)
	}
	msg, err := note.Open(read("checkpoint"), note.VerifierList(verifier))
	if err != nil {
		fail("checkpoint note: %v", err)
	}
	lines := strings.Split(msg.Text, "\n")
	if len(lines) < 4 || lines[0] != verifier.Name() {
		fail("checkpoint body %q", msg.Text)
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil {
		fail("checkpoint size: %v", err)
	}
	rootBytes, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(rootBytes) != tlog.HashSize {
		fail("checkpoint root %q", lines[2])
	}
	var root tlog.Hash
	copy(root[:], rootBytes)

	// The root through tiles, each authenticated against the checkpoint by TileHashReader.
	reader := &tileReader{}
	tiles := tlog.TileHashReader(tlog.Tree{N: size, Hash: root}, reader)
	got, err := tlog.TreeHash(size, tiles)
	if err != nil {
		fail("tree hash through tiles: %v", err)
	}
	if got != root {
		fail("tiles give root %v, checkpoint says %v", got, root)
	}

	// Records from the entry bundles (uint16 length-prefixed), hashed as tlog.RecordHash.
	var records [][]byte
	for n := int64(0); n*(1<<height) < size; n++ {
		w := size - n*(1<<height)
		if w > 1<<height {
			w = 1 << height
		}
		t := tlog.Tile{H: height, L: -1, N: n, W: int(w)}
		data := read(c2spPath(t))
		for i := 0; i < int(w); i++ {
			if len(data) < 2 {
				fail("%s: bundle ends after %d entries", c2spPath(t), i)
			}
			length := int(data[0])<<8 | int(data[1])
			if len(data) < 2+length {
				fail("%s: entry %d truncated", c2spPath(t), i)
			}
			records = append(records, data[2:2+length])
			data = data[2+length:]
		}
		if len(data) != 0 {
			fail("%s: %d bytes after %d entries", c2spPath(t), len(data), w)
		}
	}
	if int64(len(records)) != size {
		fail("bundles hold %d records, checkpoint size is %d", len(records), size)
	}
	stride := size/512 + 1 // every record of a small log, a spread of a large one
	proved := 0
	for i := int64(0); i < size; i += stride {
		proof, err := tlog.ProveRecord(size, i, tiles)
		if err != nil {
			fail("prove record %d: %v", i, err)
		}
		if err := tlog.CheckRecord(proof, size, root, i, tlog.RecordHash(records[i])); err != nil {
			fail("record %d: %v", i, err)
		}
		proved++
	}

	// Every tile's bytes recomputed from the records alone (tlog's own storage layout).
	var stored []tlog.Hash
	memory := tlog.HashReaderFunc(func(indexes []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(indexes))
		for i, x := range indexes {
			if x >= int64(len(stored)) {
				return nil, fmt.Errorf("hash %d not stored", x)
			}
			out[i] = stored[x]
		}
		return out, nil
	})
	for i, record := range records {
		hashes, err := tlog.StoredHashes(int64(i), record, memory)
		if err != nil {
			fail("stored hashes %d: %v", i, err)
		}
		stored = append(stored, hashes...)
	}
	compared := 0
	for _, t := range tlog.NewTiles(height, 0, size) {
		// This NewTiles lists every width of the rightmost partial tiles (the Go checksum
		// database publishes them all); tlog-tiles requires only those of checkpointed sizes.
		if t.W != 1<<height && int64(t.W) != (size>>(height*t.L))%(1<<height) {
			continue
		}
		want, err := tlog.ReadTileData(t, memory)
		if err != nil {
			fail("tile data %s: %v", c2spPath(t), err)
		}
		if !bytes.Equal(read(c2spPath(t)), want) {
			fail("%s differs from the tile tlog computes from the records", c2spPath(t))
		}
		compared++
	}

	// Every published file name parses as a tile path the Go way, and prints back the same.
	parsed := 0
	if !strings.HasPrefix(source, "http") {
		filepath.Walk(filepath.Join(source, "tile"), func(p string, info os.FileInfo, err error) error {
			if err != nil || info.IsDir() || strings.HasPrefix(info.Name(), ".") {
				return err
			}
			rel, _ := filepath.Rel(source, p)
			rel = filepath.ToSlash(rel)
			goPath := "tile/8/" + strings.Replace(strings.TrimPrefix(rel, "tile/"), "entries/", "data/", 1)
			t, err := tlog.ParseTilePath(goPath)
			if err != nil {
				fail("%s: %v", rel, err)
			}
			if c2spPath(t) != rel {
				fail("%s parses as %s", rel, c2spPath(t))
			}
			parsed++
			return nil
		})
	}
	fmt.Printf("ok size=%d root=%v tiles_read=%d records_proved=%d tiles_recomputed=%d paths_parsed=%d\n",
		size, root, reader.read, proved, compared, parsed)
}
