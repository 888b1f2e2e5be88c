package main

import (
	"context"

	"github.com/spf13/cobra"
)

// listGroup is a command group whose bare form lists, as its "list"
// subcommand does ("natctl pools" is "natctl pools list"); the caller adds
// the other subcommands.
func listGroup(use, short, listShort string, list func(context.Context) error) *cobra.Command {
	run := func(cmd *cobra.Command, _ []string) error { return list(cmd.Context()) }
	c := &cobra.Command{Use: use, Short: short, Args: args(cobra.NoArgs), RunE: run}
	c.AddCommand(&cobra.Command{Use: "list", Short: listShort, Args: args(cobra.NoArgs), RunE: run})
	return c
}
