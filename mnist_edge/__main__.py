"""`python -m mnist_edge`: the `mnist-edge` command."""

from mnist_edge.cli import main

main()
