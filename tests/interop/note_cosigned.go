// note_cosigned opens a cosigned checkpoint with golang.org/x/mod/sumdb/note.
//
// Usage: note_cosigned NOTE_FILE KEY...  where each KEY is "log=<vkey>" (an Ed25519 note key,
// type 0x01, parsed by note.NewVerifier) or "witness=<vkey>" (a C2SP tlog-cosignature/v1 key,
// type 0x04). Go's note package knows only type 0x01, so a cosignature/v1 key is given to it as
// a note.Verifier implemented here, as Go witness clients do: its KeyHash is the spec's key ID
// (SHA-256(name || 0x0A || 0x04 || key)[:4]) and Verify checks the Ed25519 signature over
// "cosignature/v1\ntime <t>\n" || note text. note.Open does the parsing, matches signature lines
// to keys by name and key hash, and rejects a note whose known-key signature fails.
// Prints "verified <name>" for each verified signature; exits 1 if note.Open refuses the note.
package main

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

const algCosignatureV1 = 0x04

type cosignatureV1 struct {
	name string
	hash uint32
	key  ed25519.PublicKey
}

func (v *cosignatureV1) Name() string    { return v.name }
func (v *cosignatureV1) KeyHash() uint32 { return v.hash }

func (v *cosignatureV1) Verify(msg, sig []byte) bool {
	// c2sp.org/tlog-cosignature: u64 big-endian timestamp || Ed25519 signature.
	if len(sig) != 8+ed25519.SignatureSize {
		return false
	}
	t := binary.BigEndian.Uint64(sig[:8])
	if t > 1<<63-1 {
		return false
	}
	signed := append([]byte("cosignature/v1\ntime "+strconv.FormatUint(t, 10)+"\n"), msg...)
	return ed25519.Verify(v.key, signed, sig[8:])
}

func newCosignatureV1(vkey string) (note.Verifier, error) {
	parts := strings.SplitN(vkey, "+", 3)
	if len(parts) != 3 {
		return nil, fmt.Errorf("malformed witness vkey")
	}
	raw, err := base64.StdEncoding.DecodeString(parts[2])
	if err != nil || len(raw) != 1+ed25519.PublicKeySize || raw[0] != algCosignatureV1 {
		return nil, fmt.Errorf("witness vkey is not a cosignature/v1 Ed25519 key")
	}
	h := sha256.Sum256(append([]byte(parts[0]+"\n"), raw...))
	hash := binary.BigEndian.Uint32(h[:4])
	if fmt.Sprintf("%08x", hash) != strings.ToLower(parts[1]) {
		return nil, fmt.Errorf("witness vkey key id does not match")
	}
	return &cosignatureV1{name: parts[0], hash: hash, key: ed25519.PublicKey(raw[1:])}, nil
}

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: note_cosigned NOTE_FILE log=VKEY|witness=VKEY...")
		os.Exit(2)
	}
	msg, err := os.ReadFile(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var verifiers []note.Verifier
	for _, arg := range os.Args[2:] {
		var v note.Verifier
		switch {
		case strings.HasPrefix(arg, "log="):
			v, err = note.NewVerifier(strings.TrimPrefix(arg, "log="))
		case strings.HasPrefix(arg, "witness="):
			v, err = newCosignatureV1(strings.TrimPrefix(arg, "witness="))
		default:
			err = fmt.Errorf("key %q is neither log= nor witness=", arg)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		verifiers = append(verifiers, v)
	}
	n, err := note.Open(msg, note.VerifierList(verifiers...))
	if err != nil {
		fmt.Println("refused:", err)
		os.Exit(1)
	}
	for _, s := range n.Sigs {
		fmt.Println("verified", s.Name)
	}
}
