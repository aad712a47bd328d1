from ddpm_tui.cli import main

main()
