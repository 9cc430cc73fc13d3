// statuscheck reads Kubernetes objects as JSON and prints, for each, the verdicts of the
// clients that judge them in a GitOps setup: kstatus (cli-utils, read by Flux and
// kpt/Config Sync) and an Argo CD Lua health script run the way Argo CD runs one.
//
//	statuscheck --argocd-health charts/llm-operator/argocd-health.lua [FILE ...]
//
// Input (files, or stdin when none): JSON objects one after another (one per line or
// not), JSON arrays of objects, or a List (`kubectl get -o json`); a List's items are
// judged one by one. Output: one JSON line per object, in order:
//
//	{"kind": ..., "namespace": ..., "name": ...,
//	 "kstatus": {"status": "InProgress", "message": ...},
//	 "argocd": {"status": "Progressing", "message": ...}}
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	lua "github.com/yuin/gopher-lua"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type verdict struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

type result struct {
	Kind      string   `json:"kind"`
	Namespace string   `json:"namespace,omitempty"`
	Name      string   `json:"name"`
	Kstatus   verdict  `json:"kstatus"`
	Argocd    *verdict `json:"argocd,omitempty"`
}

// Argo CD's health codes; a script returning anything else gets Unknown.
var argoStatuses = map[string]bool{
	"Unknown": true, "Progressing": true, "Suspended": true, "Healthy": true, "Degraded": true, "Missing": true,
}

const invalidHealthStatus = "Lua returned an invalid health status"

func main() {
	healthPath := flag.String("argocd-health", "", "an Argo CD health.lua to run on every object (none: no argocd verdict)")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: statuscheck [--argocd-health FILE] [FILE ...]\n")
		flag.PrintDefaults()
	}
	flag.Parse()

	script := ""
	if *healthPath != "" {
		b, err := os.ReadFile(*healthPath)
		if err != nil {
			fail(err)
		}
		script = string(b)
	}
	var inputs []io.Reader
	if flag.NArg() == 0 {
		inputs = append(inputs, os.Stdin)
	}
	for _, p := range flag.Args() {
		f, err := os.Open(p)
		if err != nil {
			fail(err)
		}
		defer f.Close()
		inputs = append(inputs, f)
	}

	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	enc := json.NewEncoder(out)
	enc.SetEscapeHTML(false)
	for _, in := range inputs {
		objs, err := readObjects(in)
		if err != nil {
			fail(err)
		}
		for _, u := range objs {
			r := result{Kind: u.GetKind(), Namespace: u.GetNamespace(), Name: u.GetName(), Kstatus: kstatusVerdict(u)}
			if script != "" {
				v := argoHealth(u, script)
				r.Argocd = &v
			}
			if err := enc.Encode(r); err != nil {
				fail(err)
			}
		}
	}
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "statuscheck: %v\n", err)
	os.Exit(2)
}

// readObjects decodes every JSON value in r; arrays and Lists give their items.
func readObjects(r io.Reader) ([]*unstructured.Unstructured, error) {
	dec := json.NewDecoder(r)
	var objs []*unstructured.Unstructured
	for {
		var raw json.RawMessage
		if err := dec.Decode(&raw); errors.Is(err, io.EOF) {
			return objs, nil
		} else if err != nil {
			return nil, fmt.Errorf("reading JSON: %w", err)
		}
		var items []json.RawMessage
		if strings.HasPrefix(strings.TrimSpace(string(raw)), "[") {
			if err := json.Unmarshal(raw, &items); err != nil {
				return nil, fmt.Errorf("reading a JSON array: %w", err)
			}
		} else {
			items = []json.RawMessage{raw}
		}
		for _, item := range items {
			got, err := decodeObject(item)
			if err != nil {
				return nil, err
			}
			objs = append(objs, got...)
		}
	}
}

// decodeObject decodes one object the way client-go does (whole numbers as int64, which
// kstatus' NestedInt64 needs); a List gives its items.
func decodeObject(raw []byte) ([]*unstructured.Unstructured, error) {
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(raw); err != nil {
		return nil, fmt.Errorf("reading an object: %w", err)
	}
	if !u.IsList() {
		return []*unstructured.Unstructured{u}, nil
	}
	list, err := u.ToList()
	if err != nil {
		return nil, fmt.Errorf("reading a List: %w", err)
	}
	out := make([]*unstructured.Unstructured, 0, len(list.Items))
	for i := range list.Items {
		out = append(out, &list.Items[i])
	}
	return out, nil
}

func kstatusVerdict(u *unstructured.Unstructured) verdict {
	res, err := status.Compute(u)
	if err != nil {
		return verdict{Status: "Error", Message: err.Error()}
	}
	return verdict{Status: string(res.Status), Message: res.Message}
}

// argoHealth runs a health script as Argo CD's util/lua does for a resource override
// without useOpenLibs: only the package, base and table libraries and a safe os (time and
// date) are open, `obj` is a global table converted from the object, the chunk's return
// value is the health, and the script has one second. A script that fails makes the
// health Unknown with the error, as the Argo CD controller reports it.
func argoHealth(u *unstructured.Unstructured, script string) verdict {
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer l.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
		{lua.OsLibName, openSafeOs},
	} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(lib.open), NRet: 0, Protect: true}, lua.LString(lib.name)); err != nil {
			return verdict{Status: "Unknown", Message: err.Error()}
		}
	}
	l.PreloadModule(lua.OsLibName, func(l *lua.LState) int {
		l.Push(l.SetFuncs(l.NewTable(), safeOsFuncs))
		return 1
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("obj", toLua(l, u.Object))

	if err := l.DoString(script); err != nil {
		var apiErr *lua.ApiError
		if errors.As(err, &apiErr) && apiErr.Type == lua.ApiErrorRun {
			apiErr.StackTrace = ""
		}
		return verdict{Status: "Unknown", Message: err.Error()}
	}
	ret := l.Get(-1)
	switch t := ret.(type) {
	case *lua.LTable:
		st, err1 := stringField(t, "status")
		msg, err2 := stringField(t, "message")
		if err := errors.Join(err1, err2); err != nil {
			return verdict{Status: "Unknown", Message: err.Error()}
		}
		if !argoStatuses[st] {
			return verdict{Status: "Unknown", Message: invalidHealthStatus}
		}
		return verdict{Status: st, Message: msg}
	default:
		if ret == lua.LNil {
			// Argo CD takes a nil return as an empty health, which it shows as no health at all.
			return verdict{Status: "", Message: ""}
		}
		return verdict{Status: "Unknown", Message: fmt.Sprintf("expect table output from Lua script, not %s", ret.Type())}
	}
}

// stringField reads a string field of the returned table, as Argo CD's JSON round trip
// into its HealthStatus struct would: absent is "", anything but a string is an error.
func stringField(t *lua.LTable, key string) (string, error) {
	switch v := t.RawGetString(key).(type) {
	case lua.LString:
		return string(v), nil
	default:
		if v == lua.LNil {
			return "", nil
		}
		return "", fmt.Errorf("health %s is a Lua %s, not a string", key, v.Type())
	}
}

// toLua converts a decoded object into Lua values as Argo CD's decodeValue does.
func toLua(l *lua.LState, value any) lua.LValue {
	switch v := value.(type) {
	case bool:
		return lua.LBool(v)
	case float64:
		return lua.LNumber(v)
	case int64:
		return lua.LNumber(v)
	case int:
		return lua.LNumber(v)
	case int32:
		return lua.LNumber(v)
	case json.Number:
		return lua.LString(v)
	case string:
		return lua.LString(v)
	case []any:
		arr := l.CreateTable(len(v), 0)
		for _, item := range v {
			arr.Append(toLua(l, item))
		}
		return arr
	case map[string]any:
		tbl := l.CreateTable(0, len(v))
		for key, item := range v {
			tbl.RawSetH(lua.LString(key), toLua(l, item))
		}
		return tbl
	}
	return lua.LNil
}

// The safe subset of Lua's os library that Argo CD opens, time and date; only their forms
// without arguments, and a script that passes any fails here rather than differ silently.
var safeOsFuncs = map[string]lua.LGFunction{
	"time": func(l *lua.LState) int {
		if l.GetTop() > 0 {
			l.RaiseError("statuscheck supports only os.time() without arguments")
		}
		l.Push(lua.LNumber(time.Now().Unix()))
		return 1
	},
	"date": func(l *lua.LState) int {
		if l.GetTop() > 0 {
			l.RaiseError("statuscheck supports only os.date() without arguments")
		}
		l.Push(lua.LString(time.Now().Format("Mon Jan  2 15:04:05 2006")))
		return 1
	},
}

func openSafeOs(l *lua.LState) int {
	l.Push(l.RegisterModule(lua.OsLibName, safeOsFuncs))
	return 1
}
