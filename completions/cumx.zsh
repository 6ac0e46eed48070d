#compdef cumx

_cumx_completion() {
  eval $(env _TYPER_COMPLETE_ARGS="${words[1,$CURRENT]}" _CUMX_COMPLETE=complete_zsh cumx)
}

compdef _cumx_completion cumx
