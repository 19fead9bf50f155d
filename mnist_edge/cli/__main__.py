"""`python -m mnist_edge.cli`: the `mnist-edge` command."""

from mnist_edge.cli import main

main()
