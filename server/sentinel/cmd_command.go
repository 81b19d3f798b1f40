package sentinel

import (
	"sort"
	"strings"
)

// The COMMAND family describes this server's own table, so that redis-cli
// (which reads COMMAND DOCS for its hints) and clients that introspect see
// exactly what is served here, not a whole Redis.

func cmdCommand(c *conn, _ [][]byte) {
	cmds := sortedCommands(commandTable)
	c.w.ArrayHeader(len(cmds))
	for _, k := range cmds {
		writeCommandInfo(c, k)
	}
}

func cmdCommandCount(c *conn, _ [][]byte) { c.w.Int(int64(len(commandTable))) }

// findCommand resolves "name" or "container|sub", ignoring case.
func findCommand(name []byte) *command {
	top, sub, hasSub := strings.Cut(string(name), "|")
	k := lookup(commandTable, []byte(top))
	if k == nil || !hasSub {
		return k
	}
	return lookup(k.subs, []byte(sub))
}

func cmdCommandInfo(c *conn, args [][]byte) {
	if len(args) == 2 {
		cmdCommand(c, args)
		return
	}
	c.w.ArrayHeader(len(args) - 2)
	for _, a := range args[2:] {
		if k := findCommand(a); k != nil {
			writeCommandInfo(c, k)
		} else {
			c.w.NullBulk()
		}
	}
}

// writeCommandInfo writes Redis 7's ten-element command description.
func writeCommandInfo(c *conn, k *command) {
	c.w.ArrayHeader(10)
	c.w.BulkString(k.name)
	c.w.Int(int64(k.arity))
	c.w.SetHeader(len(k.info))
	for _, f := range k.info {
		c.w.SimpleString(f)
	}
	c.w.Int(0) // first key: no command here takes keys
	c.w.Int(0)
	c.w.Int(0)
	c.w.SetHeader(len(k.acl))
	for _, a := range k.acl {
		c.w.SimpleString(a)
	}
	c.w.ArrayHeader(0) // tips
	c.w.ArrayHeader(0) // key specs
	subs := sortedCommands(k.subs)
	c.w.ArrayHeader(len(subs))
	for _, s := range subs {
		writeCommandInfo(c, s)
	}
}

func cmdCommandDocs(c *conn, args [][]byte) {
	var cmds []*command
	if len(args) == 2 {
		cmds = sortedCommands(commandTable)
	} else {
		for _, a := range args[2:] {
			if k := findCommand(a); k != nil {
				cmds = append(cmds, k)
			}
		}
	}
	c.w.MapHeader(len(cmds))
	for _, k := range cmds {
		c.w.BulkString(k.name)
		writeCommandDoc(c, k)
	}
}

func writeCommandDoc(c *conn, k *command) {
	n := 3
	if len(k.subs) > 0 {
		n++
	}
	c.w.MapHeader(n)
	c.w.BulkString("summary")
	c.w.BulkString(k.summary)
	c.w.BulkString("since")
	c.w.BulkString(k.since)
	c.w.BulkString("group")
	c.w.BulkString(k.group)
	if len(k.subs) > 0 {
		c.w.BulkString("subcommands")
		subs := sortedCommands(k.subs)
		c.w.MapHeader(len(subs))
		for _, s := range subs {
			c.w.BulkString(s.name)
			writeCommandDoc(c, s)
		}
	}
}

// cmdCommandList supports FILTERBY PATTERN and FILTERBY ACLCAT; no command
// here belongs to a module, so FILTERBY MODULE lists nothing.
func cmdCommandList(c *conn, args [][]byte) {
	var keep func(k *command) bool
	switch {
	case len(args) == 2:
		keep = func(*command) bool { return true }
	case len(args) == 5 && strings.EqualFold(string(args[2]), "filterby"):
		v := string(args[4])
		switch strings.ToLower(string(args[3])) {
		case "pattern":
			keep = func(k *command) bool { return globMatch(v, k.name, true) }
		case "aclcat":
			keep = func(k *command) bool {
				for _, a := range k.acl {
					if strings.EqualFold(a, "@"+v) {
						return true
					}
				}
				return false
			}
		case "module":
			keep = func(*command) bool { return false }
		}
	}
	if keep == nil {
		c.w.Error(errSyntax)
		return
	}
	var names []string
	for _, k := range sortedCommands(commandTable) {
		if keep(k) {
			names = append(names, k.name)
		}
		for _, s := range sortedCommands(k.subs) {
			if keep(s) {
				names = append(names, s.name)
			}
		}
	}
	sort.Strings(names)
	c.w.StringArray(names...)
}

func cmdCommandHelp(c *conn, _ [][]byte) {
	writeHelp(c, []string{
		"COMMAND <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
		"(no subcommand)",
		"    Return details about all commands.",
		"COUNT",
		"    Return the total number of commands.",
		"LIST [FILTERBY (MODULE <module-name>|ACLCAT <category>|PATTERN <pattern>)]",
		"    Return a list of all commands.",
		"INFO [<command-name> ...]",
		"    Return details about the given commands, or all of them.",
		"DOCS [<command-name> ...]",
		"    Return documentation details about the given commands, or all of them.",
		"HELP",
		"    Print this help.",
	})
}
