from taskspace.cli import main

main()
