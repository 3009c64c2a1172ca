package builtins

import (
	"errors"
	"testing"

	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"
)

// An observation's answer crosses machines as it was: every kind an
// observation returns, nested, and an error as its message.
func TestAnswerCrossesMachines(t *testing.T) {
	d := starlark.NewDict(2)
	d.SetKey(starlark.String("h1"), starlark.NewDict(0))
	d.SetKey(starlark.MakeInt(7), starlark.Tuple{starlark.True, starlark.Float(1.5), starlark.Bytes("\x00b")})
	for _, v := range []starlark.Value{
		starlark.None,
		starlark.MakeInt64(1 << 62).Mul(starlark.MakeInt(8)), // past int64
		starlark.NewList([]starlark.Value{starlark.String("a"), d}),
		starlarkstruct.FromStringDict(starlark.String("exec_result"), starlark.StringDict{"rc": starlark.MakeInt(3), "stdout": starlark.String("x\n")}),
		starlarkstruct.FromStringDict(starlarkstruct.Default, starlark.StringDict{"ok": starlark.False}),
	} {
		b, err := encodeAnswer(v, nil)
		if err != nil {
			t.Fatalf("%s: %v", v, err)
		}
		got, err := decodeAnswer(nil, b)
		if err != nil {
			t.Fatalf("%s: %v", v, err)
		}
		if got.String() != v.String() || got.Type() != v.Type() {
			t.Errorf("sent %s (%s), got %s (%s)", v, v.Type(), got, got.Type())
		}
	}
	b, _ := encodeAnswer(nil, errors.New("ping: 10.0.0.2 from netns \"a\": timed out"))
	if _, err := decodeAnswer(nil, b); err == nil || err.Error() != `ping: 10.0.0.2 from netns "a": timed out` {
		t.Errorf("an error crossed as %v", err)
	}
	// A namespace of the lab's crosses by name (reach() answers with its
	// netns); a value of nothing every machine has does not cross.
	b, err := encodeAnswer(&Netns{name: "a"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := decodeAnswer(nil, b); err != nil || got.(*Netns).name != "a" {
		t.Errorf("a netns crossed as %v, %v", got, err)
	}
	if _, err := encodeAnswer(&Capture{}, nil); err == nil {
		t.Error("a capture was sent across machines")
	}
}
