// peer-memberlist: one HashiCorp memberlist member per process, at the library's LAN
// defaults (DefaultLANConfig), for peerbench. It prints what the other peer programs print,
// one JSON object per line on stdout:
//
//	{"t_ms":..,"event":"up"|"down","node":NAME}   on a join, and on a death or a leave
//	{"t_ms":..,"ready":true}                     once the member listens
//
// Usage: peer-memberlist --name N --listen IP:PORT [--seed IP:PORT ...]
// (--metrics-interval and --cluster-size are accepted and ignored: liveness only).
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

var out sync.Mutex

func emit(fields map[string]interface{}) {
	fields["t_ms"] = time.Now().UnixMilli()
	line, _ := json.Marshal(fields)
	out.Lock()
	defer out.Unlock()
	os.Stdout.Write(append(line, '\n'))
}

type events struct{ me string }

func (e events) NotifyJoin(n *memberlist.Node) {
	if n.Name != e.me {
		emit(map[string]interface{}{"event": "up", "node": n.Name})
	}
}

func (e events) NotifyLeave(n *memberlist.Node) {
	if n.Name != e.me {
		emit(map[string]interface{}{"event": "down", "node": n.Name})
	}
}

func (e events) NotifyUpdate(n *memberlist.Node) {}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "peer-memberlist: "+format+"\n", args...)
	os.Exit(2)
}

func main() {
	var name, listen string
	var seeds []string
	args := os.Args[1:]
	for i := 0; i < len(args); i += 2 {
		if i+1 >= len(args) {
			fail("%s needs a value", args[i])
		}
		switch v := args[i+1]; args[i] {
		case "--name":
			name = v
		case "--listen":
			listen = v
		case "--seed":
			seeds = append(seeds, v)
		case "--metrics-interval", "--cluster-size":
		default:
			fail("unknown argument %s", args[i])
		}
	}
	host, port, err := net.SplitHostPort(listen)
	if name == "" || err != nil {
		fail("--name and --listen IP:PORT are required")
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		fail("--listen %s: %v", listen, err)
	}
	c := memberlist.DefaultLANConfig()
	c.Name = name
	c.BindAddr = host
	c.BindPort = p
	c.AdvertiseAddr = host
	c.AdvertisePort = p
	c.Events = events{me: name}
	c.LogOutput = io.Discard
	m, err := memberlist.Create(c)
	if err != nil {
		fail("create: %v", err)
	}
	emit(map[string]interface{}{"ready": true})
	if len(seeds) > 0 {
		// A seed that is not answering yet is asked again, as the other peers do.
		for {
			if _, err := m.Join(seeds); err == nil {
				break
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
	select {}
}
