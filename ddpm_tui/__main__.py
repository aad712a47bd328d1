from ddpm_tui.entry import main

main()
