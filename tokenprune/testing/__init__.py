"""Test fixtures shipped for users' own tests and for tokenprune's demo fallback: tiny random-weight models of every
family in the adapter table, and matching inputs. Not part of the pruning library; nothing here is imported by it."""
