"""Signal processing: STFT/iSTFT and the multichannel Wiener filter."""
