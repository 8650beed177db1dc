"""Style translation: the network applied after the generator, its guides and its fitting."""
