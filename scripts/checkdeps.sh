#!/usr/bin/env bash
# Enforces DESIGN.md's dependency direction on non-test imports:
# cmd -> server -> orchestrator -> {fsm, failover, probe} -> proto/gen;
# client -> proto/gen. Only server (the node's metrics) and the tests use
# the Prometheus libraries: the packages it wires stay free of them.
set -euo pipefail
mod=github.com/raftinel/raftinel
fail=0
while read -r pkg imports; do
  rel=${pkg#"$mod"}; rel=${rel#/}
  for imp in $imports; do
    bad=""
    case "$rel" in
      fsm|fsm/*)
        case "$imp" in google.golang.org/grpc*|github.com/redis/*|"$mod"/server*|"$mod"/probe*|"$mod"/failover*|"$mod"/orchestrator*|"$mod"/client*|net/http|os/exec|github.com/prometheus/*) bad=1;; esac ;;
      failover|failover/*)
        case "$imp" in "$mod"/*|google.golang.org/grpc*|github.com/redis/*|github.com/hashicorp/*|github.com/prometheus/*|net|net/*|os|os/*) bad=1;; esac ;;
      orchestrator|orchestrator/*)
        case "$imp" in "$mod"/server*|"$mod"/client*|google.golang.org/grpc*|github.com/redis/*|github.com/hashicorp/*|github.com/prometheus/*) bad=1;; esac ;;
      probe|probe/*)
        case "$imp" in "$mod"/server*|"$mod"/fsm*|"$mod"/failover*|"$mod"/orchestrator*|"$mod"/client*|google.golang.org/grpc*|github.com/hashicorp/*|github.com/prometheus/*) bad=1;; esac ;;
      client|client/*)
        case "$imp" in "$mod"/server*|"$mod"/fsm*|"$mod"/probe*|"$mod"/failover*|"$mod"/orchestrator*|github.com/hashicorp/*|github.com/prometheus/*) bad=1;; esac ;;
      security|security/*)
        case "$imp" in "$mod"/*|google.golang.org/grpc*|github.com/redis/*|github.com/prometheus/*) bad=1;; esac ;;
      server/sentinel|server/sentinel/*)
        case "$imp" in github.com/prometheus/*) bad=1;; esac ;;
      proto/gen/*|internal/resp)
        case "$imp" in "$mod"/*) [[ "$imp" == "$mod"/proto/gen/* ]] || bad=1;; esac ;;
    esac
    if [[ "$imp" == "$mod"/server || "$imp" == "$mod"/server/* ]]; then
      case "$rel" in cmd/*|integration|integration/*|server|server/*) ;; *) bad=1;; esac
    fi
    if [[ -n "$bad" ]]; then
      echo "checkdeps: $rel must not import $imp" >&2
      fail=1
    fi
  done
done < <(go list -f '{{.ImportPath}}{{range .Imports}} {{.}}{{end}}' ./...)
exit $fail
