from autofusion.cli import main

main()
