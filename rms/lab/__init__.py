"""The lab: the internet on one machine, one network and mount namespace per node."""
