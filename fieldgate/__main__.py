from fieldgate.cli import main

main()
