"""samsa.demo: demonstrations run by `samsa demo ...`, each on an embedded broker, no setup."""
