from kiroku.cli import main

main()
