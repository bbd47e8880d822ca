"""Feature sinks that follow the output-safety rule: a file output is written beside its
target under a temporary name and renamed over it once complete, so a failed, cancelled or
killed run leaves the target as it was (see ``engine/io/output_safety.py``)."""

import os

from qgis.core import QgsProcessingException, QgsProcessingOutputLayerDefinition, QgsProperty

from ..engine.io.output_safety import Publication, remove_quietly, temporary_path
from .base import destination_file


class FileSink:
    """``with FileSink(algorithm, parameters, name, context, fields, geometry_type, crs) as
    output:`` add features to ``output.sink``; after the block ``output.destination`` is
    the published layer (what ``parameterAsSink`` would have returned)."""

    def __init__(self, algorithm, parameters, name, context, fields, geometry_type, crs):
        self.context = context
        self.folder = None
        self.target = destination_file(algorithm, parameters, name, context)
        self.publication = Publication()
        if self.target:
            parameters = dict(parameters)
            parameters[name] = self._temporary_output(parameters.get(name))
        self.sink, self.staged = algorithm.parameterAsSink(parameters, name, context, fields,
                                                           geometry_type, crs)
        if self.sink is None:
            self.publication.discard()
            if self.folder:
                remove_quietly(self.folder)
            raise QgsProcessingException(algorithm.invalidSinkError(parameters, name))
        self.destination = self.staged

    def _temporary_output(self, value):
        """The sink written as the target's name inside a hidden folder beside it (layer
        names follow the file name)."""
        folder = temporary_path(os.path.join(os.path.dirname(self.target), "layer"))
        os.mkdir(folder)
        self.folder = folder
        self.temporary = os.path.join(folder, os.path.basename(self.target))
        if isinstance(value, QgsProcessingOutputLayerDefinition):
            definition = QgsProcessingOutputLayerDefinition(value)
            definition.sink = QgsProperty.fromValue(self.temporary)
            return definition
        return self.temporary

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.sink = None  # closes the file
        try:
            if exc_type is not None:
                self.publication.discard()
                return False
            if self.target:
                self._publish()
        finally:
            if self.folder:
                remove_quietly(self.folder)
        return False

    def _publish(self):
        """Rename every file the sink wrote (a shapefile's side files too) beside the target."""
        for name in sorted(os.listdir(self.folder)):
            self.publication.add(os.path.join(os.path.dirname(self.target), name),
                                 temporary=os.path.join(self.folder, name))
        self.publication.publish()
        self.destination = self.staged.replace(self.temporary, self.target)
        layers = self.context.layersToLoadOnCompletion()
        if self.staged in layers:
            layers[self.destination] = layers.pop(self.staged)
            self.context.setLayersToLoadOnCompletion(layers)
