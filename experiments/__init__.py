# Experiment packages beyond the toy worlds (each subpackage is one study area).
