from kaip.cli.main import main

main()
